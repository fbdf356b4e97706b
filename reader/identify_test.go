package reader_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
)

// The Transmitter wrappers below model cards and readers that use the
// ISO 7816-4 transport rules the simulator does not: they wrap a simulated
// card.

// t0Style answers every response with data as a T=0 card does: 61 xx first,
// the data on GET RESPONSE.
type t0Style struct {
	card    reader.Transmitter
	pending []byte
}

func (t *t0Style) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) == 5 && cmd[0] == 0x00 && cmd[1] == 0xC0 {
		if t.pending == nil {
			return []byte{0x69, 0x85}, nil
		}
		out := t.pending
		t.pending = nil
		return out, nil
	}
	ans, err := t.card.Transmit(ctx, cmd)
	if err != nil || len(ans) <= 2 {
		return ans, err
	}
	t.pending = ans
	return []byte{0x61, byte(len(ans) - 2)}, nil
}

// exactLe answers a READ BINARY that asks for more than the file holds with
// 6C xx, as some cards do at the end of a file.
type exactLe struct{ card reader.Transmitter }

func (t exactLe) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	ans, err := t.card.Transmit(ctx, cmd)
	if err != nil || len(cmd) != 5 || cmd[1] != 0xB0 || len(ans) < 2 {
		return ans, err
	}
	asked := int(cmd[4])
	if asked == 0 {
		asked = 256
	}
	if n := len(ans) - 2; n < asked {
		return []byte{0x6C, byte(n)}, nil
	}
	return ans, nil
}

// removeAfter fails every command after the first n with ErrCardRemoved.
type removeAfter struct {
	card reader.Transmitter
	n    int
}

func (t *removeAfter) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if t.n == 0 {
		return nil, fmt.Errorf("fake reader: %w", reader.ErrCardRemoved)
	}
	t.n--
	return t.card.Transmit(ctx, cmd)
}

// replaceAnswer answers command number at (1-based) with answer.
type replaceAnswer struct {
	card   reader.Transmitter
	at     int
	answer []byte
	n      int
}

func (t *replaceAnswer) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	t.n++
	if t.n == t.at {
		return bytes.Clone(t.answer), nil
	}
	return t.card.Transmit(ctx, cmd)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func TestIdentify(t *testing.T) {
	gen1DER := readFixture(t, "auth-gen1.der")
	gen1CA := fixtureCert(t, "ca-gen1.pem")
	gen2CA := fixtureCert(t, "ca-gen2.der")
	gen1KeyID, err := jpkitest.KeyID(gen1CA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	reads := ceilDiv(len(gen1DER), 256)
	goodAPDUs := 4 + reads
	card := func(label, file string) cardsim.Profile {
		return cardsim.Profile{TokenLabel: label, AuthCert: readFixture(t, file), CACert: gen1CA.Raw}
	}
	good := card(cardsim.LabelMyNumberCard, "auth-gen1.der")

	tests := []struct {
		name      string
		profile   cardsim.Profile
		fault     cardsim.Fault
		faultAt   int // commands processed before the fault
		wrap      func(reader.Transmitter) reader.Transmitter
		wantErr   error
		wantAPDUs int // 0: don't check
		// on success or ErrExpired/ErrNotYetValid:
		wantSerial uint64
		wantKeyID  []byte
		wantToken  reader.TokenType
	}{
		{
			name: "good card", profile: good,
			wantAPDUs: goodAPDUs, wantSerial: 0x1A2B3C4D, wantKeyID: gen1CA.SubjectKeyId, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "second CA generation", profile: card(cardsim.LabelMyNumberCard, "auth-gen2.der"),
			wantAPDUs: goodAPDUs, wantSerial: 0x2B3C4D5E, wantKeyID: gen2CA.SubjectKeyId, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "no authority key ID: key ID from anchor", profile: card(cardsim.LabelMyNumberCard, "auth-noaki.der"),
			wantSerial: 0xABCDEF, wantKeyID: gen1KeyID, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "juki card reported", profile: card(cardsim.LabelJuki, "auth-gen1.der"),
			wantAPDUs: goodAPDUs, wantSerial: 0x1A2B3C4D, wantKeyID: gen1CA.SubjectKeyId, wantToken: reader.TokenJuki,
		},
		{
			name: "android token reported", profile: card(cardsim.LabelAndroid, "auth-gen1.der"),
			wantSerial: 0x1A2B3C4D, wantKeyID: gen1CA.SubjectKeyId, wantToken: reader.TokenAndroid,
		},
		{
			name: "ios token reported", profile: card(cardsim.LabelIOS, "auth-gen1.der"),
			wantSerial: 0x1A2B3C4D, wantKeyID: gen1CA.SubjectKeyId, wantToken: reader.TokenIOS,
		},
		{
			name: "T=0 style 61xx", profile: good,
			wrap:      func(c reader.Transmitter) reader.Transmitter { return &t0Style{card: c} },
			wantAPDUs: 3 + 2*(1+reads), wantSerial: 0x1A2B3C4D, wantKeyID: gen1CA.SubjectKeyId, wantToken: reader.TokenMyNumberCard,
		},
		{
			// Offsets 0 and 256 read fully; at 512 the card has 88 of the 256
			// bytes asked, answers 6C 58, and the re-sent read comes back short.
			name: "6Cxx at end of a truncated file", profile: cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: gen1DER[:600]},
			wrap:    func(c reader.Transmitter) reader.Transmitter { return exactLe{card: c} },
			wantErr: reader.ErrCardResponse, wantAPDUs: 4 + 3 + 1, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "expired", profile: card(cardsim.LabelMyNumberCard, "auth-expired.der"),
			wantErr: reader.ErrExpired, wantSerial: 0x10000003, wantKeyID: gen1CA.SubjectKeyId, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "not yet valid", profile: card(cardsim.LabelMyNumberCard, "auth-notyet.der"),
			wantErr: reader.ErrNotYetValid, wantSerial: 0x10000004, wantKeyID: gen1CA.SubjectKeyId, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "untrusted issuer", profile: card(cardsim.LabelMyNumberCard, "auth-other.der"),
			wantErr: reader.ErrUntrustedIssuer, wantAPDUs: goodAPDUs, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "not the auth profile", profile: card(cardsim.LabelMyNumberCard, "auth-signpolicy.der"),
			wantErr: reader.ErrBadCertificate, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "EF 000A holds no certificate", profile: cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: bytes.Repeat([]byte{0xA5}, 300)},
			wantErr: reader.ErrBadCertificate, wantAPDUs: 5, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "DER header claims 1 MB", profile: cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: append([]byte{0x30, 0x83, 0x10, 0x00, 0x00}, make([]byte, 300)...)},
			wantErr: reader.ErrCardResponse, wantAPDUs: 5, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "no JPKI-AP", profile: cardsim.Profile{AuthCert: gen1DER},
			wantErr: reader.ErrNotMyNumberCard, wantAPDUs: 1,
		},
		{
			name: "unknown token label", profile: card("SOMEOTHERTOKEN", "auth-gen1.der"),
			wantErr: reader.ErrNotMyNumberCard, wantAPDUs: 3,
		},
		{
			name: "no EF 000A", profile: cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard},
			wantErr: reader.ErrCardResponse, wantAPDUs: 4, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "truncated certificate file, cut in a middle chunk", profile: cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: gen1DER[:600]},
			wantErr: reader.ErrCardResponse, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "truncated certificate file, cut in the first chunk", profile: cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: gen1DER[:200]},
			wantErr: reader.ErrCardResponse, wantAPDUs: 5, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "truncated certificate file, cut on a chunk boundary", profile: cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: gen1DER[:512]},
			wantErr: reader.ErrCardResponse, wantAPDUs: 7, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "card answers garbage from the start", profile: good, fault: cardsim.FaultGarbage,
			wantErr: reader.ErrCardResponse, wantAPDUs: 1,
		},
		{
			name: "card answers garbage mid-read", profile: good, fault: cardsim.FaultGarbage, faultAt: 6,
			wantErr: reader.ErrCardResponse, wantAPDUs: 7, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "card truncates answers mid-read", profile: good, fault: cardsim.FaultTruncate, faultAt: 5,
			wantErr: reader.ErrCardResponse, wantAPDUs: 6, wantToken: reader.TokenMyNumberCard,
		},
		{
			// Half the padded label is still the whole label; the certificate
			// header chunk is then short.
			name: "card truncates answers from the token on", profile: good, fault: cardsim.FaultTruncate, faultAt: 2,
			wantErr: reader.ErrCardResponse, wantAPDUs: 5, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "token label cut short", profile: good,
			wrap: func(c reader.Transmitter) reader.Transmitter {
				return &replaceAnswer{card: c, at: 3, answer: []byte("JPKIAPIC\x90\x00")}
			},
			wantErr: reader.ErrNotMyNumberCard, wantAPDUs: 3,
		},
		{
			name: "card leaves mid-read (simulator)", profile: good, fault: cardsim.FaultRemove, faultAt: 6,
			wantErr: reader.ErrCardRemoved, wantAPDUs: 7, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "card leaves mid-read (reader)", profile: good,
			wrap:    func(c reader.Transmitter) reader.Transmitter { return &removeAfter{card: c, n: 5} },
			wantErr: reader.ErrCardRemoved, wantAPDUs: 6, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "card leaves before the first command", profile: good,
			wrap:    func(c reader.Transmitter) reader.Transmitter { return &removeAfter{card: c} },
			wantErr: reader.ErrCardRemoved, wantAPDUs: 1,
		},
		{
			name: "wrong status on SELECT EF", profile: good,
			wrap: func(c reader.Transmitter) reader.Transmitter {
				return &replaceAnswer{card: c, at: 4, answer: []byte{0x69, 0x82}}
			},
			wantErr: reader.ErrCardResponse, wantAPDUs: 4, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "wrong status on READ BINARY", profile: good,
			wrap: func(c reader.Transmitter) reader.Transmitter {
				return &replaceAnswer{card: c, at: 6, answer: []byte{0x6B, 0x00}}
			},
			wantErr: reader.ErrCardResponse, wantAPDUs: 6, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "oversize answer", profile: good,
			wrap: func(c reader.Transmitter) reader.Transmitter {
				return &replaceAnswer{card: c, at: 5, answer: make([]byte, 300)}
			},
			wantErr: reader.ErrCardResponse, wantAPDUs: 5, wantToken: reader.TokenMyNumberCard,
		},
		{
			name: "more data than asked", profile: good,
			wrap: func(c reader.Transmitter) reader.Transmitter {
				return &replaceAnswer{card: c, at: 3, answer: append(make([]byte, 33), 0x90, 0x00)}
			},
			wantErr: reader.ErrCardResponse, wantAPDUs: 3,
		},
		{
			name: "SELECT AP answers 6D00", profile: good,
			wrap: func(c reader.Transmitter) reader.Transmitter {
				return &replaceAnswer{card: c, at: 1, answer: []byte{0x6D, 0x00}}
			},
			wantErr: reader.ErrNotMyNumberCard, wantAPDUs: 1,
		},
	}
	v := bothGenerations(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cardsim.New(tt.profile)
			if tt.fault != cardsim.FaultNone {
				c.SetFault(tt.fault, tt.faultAt)
			}
			var tr reader.Transmitter = c
			if tt.wrap != nil {
				tr = tt.wrap(c)
			}
			id, err := reader.Identify(t.Context(), tr, v, fixtureNow)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Identify() error = %v", err)
			}
			if got := matchedSentinels(err); tt.wantErr != nil && (len(got) != 1 || got[0] != tt.wantErr) {
				t.Fatalf("Identify() error = %v, matches %v, want exactly %v", err, got, tt.wantErr)
			}
			if tt.wantAPDUs != 0 && id.APDUs != tt.wantAPDUs {
				t.Errorf("APDUs = %d, want %d", id.APDUs, tt.wantAPDUs)
			}
			if tt.wrap == nil && id.APDUs != c.Commands() {
				t.Errorf("APDUs = %d, card processed %d", id.APDUs, c.Commands())
			}
			if id.Token.Type != tt.wantToken {
				t.Errorf("Token = %+v, want type %q", id.Token, tt.wantToken)
			}
			if tt.wantSerial == 0 {
				if id.Cert != nil || id.Credential.Kind != 0 {
					t.Errorf("Identity carries a credential %v with error %v", id.Credential, err)
				}
				return
			}
			checkCredential(t, id, tt.wantSerial, tt.wantKeyID)
		})
	}
}

func checkCredential(t *testing.T, id reader.Identity, serial uint64, keyID []byte) {
	t.Helper()
	cr := id.Credential
	if cr.Kind != credential.KindCertSerial {
		t.Fatalf("Credential.Kind = %v, want cert", cr.Kind)
	}
	if id.Cert == nil || id.Cert.SerialNumber.Uint64() != serial {
		t.Fatalf("Cert = %v, want serial %X", id.Cert, serial)
	}
	if want := id.Cert.SerialNumber.Bytes(); !bytes.Equal(cr.Serial, want) || cr.Serial[0] == 0 {
		t.Errorf("Serial = % X, want % X", cr.Serial, want)
	}
	if len(keyID) != credential.KeyIDLen || !bytes.Equal(cr.IssuerKeyID, keyID) {
		t.Errorf("IssuerKeyID = %X, want %X", cr.IssuerKeyID, keyID)
	}
	if _, err := cr.Key(); err != nil {
		t.Errorf("Credential.Key() error = %v", err)
	}
}

func TestIdentifyNilVerifier(t *testing.T) {
	c := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard})
	if _, err := reader.Identify(t.Context(), c, nil, fixtureNow); err == nil || c.Commands() != 0 {
		t.Fatalf("Identify(nil verifier) = %v after %d commands, want an error before any command", err, c.Commands())
	}
}

func TestIdentifyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: readFixture(t, "auth-gen1.der")})
	_, err := reader.Identify(ctx, c, bothGenerations(t), fixtureNow)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Identify(cancelled) error = %v, want context.Canceled", err)
	}
}

func TestParseToken(t *testing.T) {
	pad := func(s string, with byte) []byte {
		b := bytes.Repeat([]byte{with}, 32)
		copy(b, s)
		return b
	}
	tests := []struct {
		name    string
		in      []byte
		want    reader.Token
		wantErr bool
	}{
		{"space padded", pad("JPKIAPICCTOKEN2", ' '), reader.Token{Label: "JPKIAPICCTOKEN2", Type: reader.TokenMyNumberCard}, false},
		{"NUL padded", pad("JPKIAPICCTOKEN", 0), reader.Token{Label: "JPKIAPICCTOKEN", Type: reader.TokenJuki}, false},
		{"trailing bytes ignored", append(pad("JPKIAPGPSETOKEN", ' '), 'X', 1, 2), reader.Token{Label: "JPKIAPGPSETOKEN", Type: reader.TokenAndroid}, false},
		{"unpadded", []byte("JPKIAPIOSTOKEN"), reader.Token{Label: "JPKIAPIOSTOKEN", Type: reader.TokenIOS}, false},
		{"prefix of a label", pad("JPKIAPICCTOKE", ' '), reader.Token{}, true},
		{"label with suffix", pad("JPKIAPICCTOKEN23", ' '), reader.Token{}, true},
		{"empty", nil, reader.Token{}, true},
		{"all padding", pad("", ' '), reader.Token{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reader.ParseToken(tt.in)
			if tt.wantErr {
				if !errors.Is(err, reader.ErrNotMyNumberCard) {
					t.Fatalf("ParseToken() error = %v, want ErrNotMyNumberCard", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseToken() = %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}

// answers is a Transmitter replaying fuzzed answers, then failing with
// ErrCardRemoved.
type answers struct{ list [][]byte }

func (a *answers) Transmit(context.Context, []byte) ([]byte, error) {
	if len(a.list) == 0 {
		return nil, reader.ErrCardRemoved
	}
	ans := a.list[0]
	a.list = a.list[1:]
	return ans, nil
}

// FuzzIdentify feeds Identify arbitrary card answers (the input is split at
// each 0xFE 0xFE into one answer per command) and checks that it never
// panics and always classifies its failure with exactly one sentinel.
func FuzzIdentify(f *testing.F) {
	// Seed: the real exchange of a good card.
	c := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: readFixture(f, "auth-gen1.der")})
	rec := &recorder{card: c}
	v := bothGenerations(f)
	if _, err := reader.Identify(f.Context(), rec, v, fixtureNow); err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Join(rec.answers, []byte{0xFE, 0xFE}))
	f.Add([]byte{0x90, 0x00, 0xFE, 0xFE, 0x90, 0x00, 0xFE, 0xFE, 'J', 'P', 'K', 'I', 0x90, 0x00})
	f.Add([]byte{0x61, 0x10})
	f.Fuzz(func(t *testing.T, in []byte) {
		tr := &answers{list: bytes.Split(in, []byte{0xFE, 0xFE})}
		id, err := reader.Identify(t.Context(), tr, v, fixtureNow)
		if err == nil {
			if id.Cert == nil || id.Credential.Kind != credential.KindCertSerial {
				t.Fatalf("success without credential: %+v", id)
			}
			return
		}
		if got := matchedSentinels(err); len(got) != 1 {
			t.Fatalf("error %v matches %v, want exactly one sentinel", err, got)
		}
	})
}

// recorder records a card's answers.
type recorder struct {
	card    reader.Transmitter
	answers [][]byte
}

func (r *recorder) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	ans, err := r.card.Transmit(ctx, cmd)
	r.answers = append(r.answers, bytes.Clone(ans))
	return ans, err
}

// Benchmark of the in-process exchange (no PC/SC), reporting APDUs per tap.
// The cache sub-benchmarks tell tobira's own work on a repeat tap (cache
// hit: hash and time checks) from a first tap (parse and RSA verify).
func BenchmarkIdentify(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cache-hit", reader.DefaultCacheSize}, {"no-cache", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			c := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: readFixture(b, "auth-gen1.der")})
			v, err := reader.NewVerifier([]*x509.Certificate{fixtureCert(b, "ca-gen1.pem")}, reader.WithCacheSize(bc.cache))
			if err != nil {
				b.Fatal(err)
			}
			var apdus int
			for b.Loop() {
				id, err := reader.Identify(b.Context(), c, v, fixtureNow)
				if err != nil {
					b.Fatal(err)
				}
				apdus = id.APDUs
			}
			b.ReportMetric(float64(apdus), "APDUs/op")
		})
	}
}
