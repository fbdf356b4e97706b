package cardsim

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tobira-ac/tobira/reader"
)

func hexAPDU(b ...byte) []byte { return b }

var (
	selectAP    = append([]byte{0x00, 0xA4, 0x04, 0x0C, 0x0A}, aidJPKI...)
	selectToken = []byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x06}
	selectCert  = []byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0A}
	selectCA    = []byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0B}
	selectSign  = []byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x01}
	selectKey   = []byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x17}
	selectPIN   = []byte{0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x18}
	triesLeft   = []byte{0x00, 0x20, 0x00, 0x80}
)

func verifyPIN(pin string) []byte {
	return append([]byte{0x00, 0x20, 0x00, 0x80, byte(len(pin))}, pin...)
}

func read(off int, le byte) []byte { return []byte{0x00, 0xB0, byte(off >> 8), byte(off), le} }

func sw(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// testCert is a stand-in for a certificate: 600 distinct-ish bytes.
func testCert() []byte {
	b := make([]byte, 600)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestProcess(t *testing.T) {
	cert := testCert()
	ca := []byte("ca certificate bytes")
	profile := Profile{TokenLabel: LabelMyNumberCard, AuthCert: cert, CACert: ca}
	tokenFile := append(append([]byte(LabelMyNumberCard), bytes.Repeat([]byte{' '}, 32-len(LabelMyNumberCard))...), 0, 1, 0, 0, 0, 0, 0, 0)

	type exchange struct {
		cmd  []byte
		want []byte // full response: data || SW
	}
	tests := []struct {
		name    string
		profile Profile
		steps   []exchange
	}{
		{"token and certificate", profile, []exchange{
			{selectAP, sw(reader.SWOK)},
			{selectToken, sw(reader.SWOK)},
			{read(0, 0x20), append(bytes.Clone(tokenFile[:32]), 0x90, 0x00)},
			{read(0, 0x00), append(bytes.Clone(tokenFile), 0x90, 0x00)}, // short read at the end
			{selectCert, sw(reader.SWOK)},
			{read(0, 0x00), append(bytes.Clone(cert[:256]), 0x90, 0x00)},
			{read(256, 0x00), append(bytes.Clone(cert[256:512]), 0x90, 0x00)},
			{read(512, 0x00), append(bytes.Clone(cert[512:]), 0x90, 0x00)},
			{read(599, 0x01), append([]byte{cert[599]}, 0x90, 0x00)},
			{read(600, 0x01), sw(reader.SWWrongOffset)},
			{read(0x7FFF, 0x01), sw(reader.SWWrongOffset)},
			{selectCA, sw(reader.SWOK)},
			{read(0, 0x00), append(bytes.Clone(ca), 0x90, 0x00)},
		}},
		{"no JPKI-AP", Profile{AuthCert: cert}, []exchange{
			{selectAP, sw(reader.SWFileNotFound)},
			{selectCert, sw(reader.SWFileNotFound)},
		}},
		{"EF before AP", profile, []exchange{
			{selectCert, sw(reader.SWFileNotFound)},
			{read(0, 0), sw(reader.SWNoCurrentEF)},
		}},
		{"other AIDs are not found", profile, []exchange{
			{hexAPDU(0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08), sw(reader.SWFileNotFound)},
			{hexAPDU(0x00, 0xA4, 0x04, 0x0C, 0x01, 0xD3), sw(reader.SWFileNotFound)},
		}},
		{"unknown EF", profile, []exchange{
			{selectAP, sw(reader.SWOK)},
			{hexAPDU(0x00, 0xA4, 0x02, 0x0C, 0x02, 0x12, 0x34), sw(reader.SWFileNotFound)},
		}},
		{"signing certificate and keys are protected", profile, []exchange{
			{selectAP, sw(reader.SWOK)},
			{selectSign, sw(reader.SWOK)},
			{read(0, 0), sw(reader.SWSecurityNotSatisfied)},
			{selectKey, sw(reader.SWOK)},
			{read(0, 0), sw(reader.SWSecurityNotSatisfied)},
			{selectPIN, sw(reader.SWOK)},
			{read(0, 0), sw(reader.SWCommandIncompatible)},
			{hexAPDU(0x80, 0x2A, 0x00, 0x80, 0x01, 0x00, 0x00), sw(reader.SWSecurityNotSatisfied)},
		}},
		{"PIN: query, wrong, right", profile, []exchange{
			{selectAP, sw(reader.SWOK)},
			{triesLeft, sw(reader.SWNoCurrentEF)},
			{selectPIN, sw(reader.SWOK)},
			{triesLeft, sw(0x63C3)},
			{verifyPIN("0000"), sw(0x63C2)},
			{triesLeft, sw(0x63C2)},
			{verifyPIN("1234"), sw(reader.SWOK)},
			{triesLeft, sw(0x63C3)}, // the counter says nothing about login state
		}},
		{"PIN: blocked after three wrong tries", Profile{TokenLabel: LabelMyNumberCard, PIN: "9876"}, []exchange{
			{selectAP, sw(reader.SWOK)},
			{selectPIN, sw(reader.SWOK)},
			{verifyPIN("1234"), sw(0x63C2)},
			{verifyPIN("1111"), sw(0x63C1)},
			{verifyPIN("2222"), sw(0x63C0)},
			{verifyPIN("9876"), sw(reader.SWAuthBlocked)},
			{triesLeft, sw(0x63C0)},
		}},
		{"PIN: one try left", Profile{TokenLabel: LabelMyNumberCard, Tries: 1}, []exchange{
			{selectAP, sw(reader.SWOK)},
			{selectPIN, sw(reader.SWOK)},
			{triesLeft, sw(0x63C1)},
			{verifyPIN("1234"), sw(reader.SWOK)},
			{triesLeft, sw(0x63C3)},
		}},
		{"PIN: blocked card", Profile{TokenLabel: LabelMyNumberCard, Tries: -1}, []exchange{
			{selectAP, sw(reader.SWOK)},
			{selectPIN, sw(reader.SWOK)},
			{triesLeft, sw(0x63C0)},
			{verifyPIN("1234"), sw(reader.SWAuthBlocked)},
		}},
		{"PIN: malformed VERIFY", profile, []exchange{
			{selectAP, sw(reader.SWOK)},
			{selectPIN, sw(reader.SWOK)},
			{verifyPIN("12345"), sw(reader.SWWrongLength)},
			{hexAPDU(0x00, 0x20, 0x00, 0x81), sw(reader.SWWrongP1P2)},
			{hexAPDU(0x00, 0x20, 0x00, 0x80, 0x00), sw(reader.SWWrongLength)}, // Le but no data
			{triesLeft, sw(0x63C3)},                                           // none of them cost a try
		}},
		{"malformed commands", profile, []exchange{
			{nil, sw(reader.SWWrongLength)},
			{hexAPDU(0x00, 0xA4, 0x04), sw(reader.SWWrongLength)},
			{hexAPDU(0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3), sw(reader.SWWrongLength)},                   // Lc larger than data
			{hexAPDU(0x00, 0xA4, 0x04, 0x0C, 0x00, 0x00, 0x02, 0x01, 0x02), sw(reader.SWWrongLength)}, // extended length
			{hexAPDU(0xA0, 0xA4, 0x04, 0x0C), sw(reader.SWCLANotSupported)},
			{hexAPDU(0x00, 0xCA, 0x00, 0x00, 0x00), sw(reader.SWINSNotSupported)},
			{hexAPDU(0x80, 0xB0, 0x00, 0x00, 0x00), sw(reader.SWINSNotSupported)},
			{hexAPDU(0x00, 0xA4, 0x04, 0x00, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01), sw(reader.SWWrongP1P2)},
			{hexAPDU(0x00, 0xA4, 0x08, 0x0C, 0x02, 0x00, 0x0A), sw(reader.SWWrongP1P2)},
			{selectAP, sw(reader.SWOK)},
			{hexAPDU(0x00, 0xA4, 0x02, 0x0C, 0x01, 0x0A), sw(reader.SWWrongLength)},
			{selectCert, sw(reader.SWOK)},
			{hexAPDU(0x00, 0xB0, 0x00, 0x00), sw(reader.SWWrongLength)},                   // no Le
			{hexAPDU(0x00, 0xB0, 0x00, 0x00, 0x01, 0x00, 0x10), sw(reader.SWWrongLength)}, // data
			{hexAPDU(0x00, 0xB0, 0x8A, 0x00, 0x10), sw(reader.SWWrongP1P2)},               // SFI addressing
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.profile)
			for i, ex := range tt.steps {
				if got := c.Process(ex.cmd); !bytes.Equal(got, ex.want) {
					t.Fatalf("step %d: Process(% X) = % X, want % X", i+1, ex.cmd, got, ex.want)
				}
			}
			if c.Commands() != len(tt.steps) {
				t.Errorf("Commands() = %d, want %d", c.Commands(), len(tt.steps))
			}
		})
	}
}

func TestReset(t *testing.T) {
	c := New(Profile{TokenLabel: LabelMyNumberCard, AuthCert: testCert()})
	c.Process(selectAP)
	c.Process(selectPIN)
	c.Process(verifyPIN("0000"))
	c.Reset()
	if got := c.Process(read(0, 1)); !bytes.Equal(got, sw(reader.SWNoCurrentEF)) {
		t.Errorf("read after reset = % X, want 6986", got)
	}
	if got := c.Process(selectCert); !bytes.Equal(got, sw(reader.SWFileNotFound)) {
		t.Errorf("select EF after reset = % X, want 6A82 (no AP selected)", got)
	}
	if c.Tries() != 2 {
		t.Errorf("Tries() after reset = %d, want 2 (kept)", c.Tries())
	}
}

func TestFaults(t *testing.T) {
	cert := testCert()
	tests := []struct {
		fault Fault
		after int
		// answers to: selectAP, selectCert, read(0, 0x10)
		want [][]byte
	}{
		{FaultNone, 0, [][]byte{sw(reader.SWOK), sw(reader.SWOK), append(bytes.Clone(cert[:16]), 0x90, 0x00)}},
		{FaultGarbage, 1, [][]byte{sw(reader.SWOK), {0xFF}, {0xFF}}},
		{FaultTruncate, 2, [][]byte{sw(reader.SWOK), sw(reader.SWOK), append(bytes.Clone(cert[:8]), 0x90, 0x00)}},
		{FaultRemove, 2, [][]byte{sw(reader.SWOK), sw(reader.SWOK), nil}},
		{FaultRemove, 0, [][]byte{nil, nil, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			c := New(Profile{TokenLabel: LabelMyNumberCard, AuthCert: cert})
			c.SetFault(tt.fault, tt.after)
			for i, cmd := range [][]byte{selectAP, selectCert, read(0, 0x10)} {
				if got := c.Process(cmd); !bytes.Equal(got, tt.want[i]) || (got == nil) != (tt.want[i] == nil) {
					t.Errorf("command %d: Process() = % X, want % X", i+1, got, tt.want[i])
				}
			}
		})
	}
}

func TestTransmit(t *testing.T) {
	c := New(Profile{TokenLabel: LabelMyNumberCard})
	var _ reader.Transmitter = c
	got, err := c.Transmit(t.Context(), selectAP)
	if err != nil || !bytes.Equal(got, sw(reader.SWOK)) {
		t.Fatalf("Transmit() = % X, %v", got, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Transmit(ctx, selectAP); !errors.Is(err, context.Canceled) {
		t.Errorf("Transmit(cancelled) error = %v, want context.Canceled", err)
	}
	c.SetFault(FaultRemove, 0)
	if _, err := c.Transmit(t.Context(), selectAP); !errors.Is(err, reader.ErrCardRemoved) {
		t.Errorf("Transmit(removed) error = %v, want ErrCardRemoved", err)
	}
	c.SetFault(FaultNone, 0)
	if _, err := c.Transmit(t.Context(), selectAP); err != nil {
		t.Errorf("Transmit() after clearing the fault: %v", err)
	}
}

func TestATR(t *testing.T) {
	if got := New(Profile{}).ATR(); !bytes.Equal(got, DefaultATR) {
		t.Errorf("default ATR = % X, want % X", got, DefaultATR)
	}
	custom := []byte{0x3B, 0x00}
	c := New(Profile{ATR: custom})
	custom[1] = 0xFF // the card keeps its own copy
	if got := c.ATR(); !bytes.Equal(got, []byte{0x3B, 0x00}) {
		t.Errorf("ATR = % X, want 3B 00", got)
	}
}

func FuzzProcess(f *testing.F) {
	for _, cmd := range [][]byte{selectAP, selectToken, selectCert, selectPIN, read(0, 0), read(0x7FFF, 1), triesLeft, verifyPIN("1234"), {0x00, 0xA4, 0x04, 0x0C, 0x00, 0x00, 0x02}} {
		f.Add(cmd, cmd)
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		c := New(Profile{TokenLabel: LabelMyNumberCard, AuthCert: testCert()})
		c.Process(selectAP)
		for _, cmd := range [][]byte{first, second} {
			r := c.Process(cmd)
			if len(r) < 2 || len(r) > 258 {
				t.Fatalf("Process(% X) = % X: not a short response", cmd, r)
			}
		}
		if c.Tries() < 0 || c.Tries() > MaxTries {
			t.Fatalf("Tries() = %d", c.Tries())
		}
	})
}
