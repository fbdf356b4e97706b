package reader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what Inspect learnt about a card: what `tobira card inspect`
// prints. It holds no 4 basic facts (the signing certificate and the
// 券面/住基 applications are never touched) and is not stored anywhere.
type Report struct {
	// Token is the token information; zero when the card has no JPKI-AP or
	// an unknown label.
	Token Token
	// TokenErr is why the token could not be read or recognised.
	TokenErr error
	// Serial is the certificate serial in lower-case hex ("" when the
	// certificate could not be parsed).
	Serial string
	// Subject and Issuer are the certificate's names (the subject CN is an
	// opaque ID; no personal data).
	Subject, Issuer string
	// NotBefore and NotAfter are the certificate validity. NotAfter hints at
	// the holder's birthday: it is shown to the holder at the reader, never
	// logged or stored.
	NotBefore, NotAfter time.Time
	// Chain is the verification result: nil when the certificate verified
	// at the inspection time, else the error (ErrExpired, ErrUntrustedIssuer,
	// ...).
	Chain error
	// TriesLeft is the PIN tries-left counter, or TriesUnknown.
	TriesLeft int
	// TriesErr is why the counter could not be read.
	TriesErr error
	// APDUs is the number of commands sent.
	APDUs int
}

// Inspect reads what a card is, at time now: the token type, the
// user-authentication certificate (serial, issuer, validity, the result of
// verifying it with v) and the PIN tries left (read without spending a
// try). It goes on after a failed step where it can, recording the failure
// in the Report. The returned error is set only when the card could not be
// talked to at all (removed, transport or context errors), or has no
// JPKI-AP.
func Inspect(ctx context.Context, t Transmitter, v *Verifier, now time.Time) (Report, error) {
	if v == nil {
		return Report{}, errors.New("inspect card: nil verifier")
	}
	c := NewClient(t)
	rep := Report{TriesLeft: TriesUnknown}
	err := inspect(ctx, c, v, now, &rep)
	rep.APDUs = c.Sent()
	return rep, err
}

// fatal reports whether err ends an inspection: the card is gone or the
// caller gave up.
func fatal(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ErrCardRemoved) || errors.Is(err, ErrCardTimeout)
}

func inspect(ctx context.Context, c *Client, v *Verifier, now time.Time, rep *Report) error {
	if err := selectJPKI(ctx, c); err != nil {
		return fmt.Errorf("inspect card: %w", err)
	}
	tokenData, err := readEF(ctx, c, fidToken, tokenLabelLen)
	if err == nil {
		rep.Token, err = ParseToken(tokenData)
	}
	if err != nil {
		if fatal(ctx, err) {
			return fmt.Errorf("inspect card: %w", err)
		}
		rep.TokenErr = err
	}
	der, err := readCertificate(ctx, c, fidAuthCert)
	if err != nil {
		if fatal(ctx, err) {
			return fmt.Errorf("inspect card: %w", err)
		}
		rep.Chain = err
	} else {
		cert, _, verr := v.verify(der, now)
		rep.Chain = verr
		if cert == nil {
			// Untrusted or off-profile: parse for display only.
			cert, _ = parseForDisplay(der)
		}
		if cert != nil {
			rep.Serial = fmt.Sprintf("%x", cert.SerialNumber)
			rep.Subject, rep.Issuer = cert.Subject.String(), cert.Issuer.String()
			rep.NotBefore, rep.NotAfter = cert.NotBefore, cert.NotAfter
		}
	}
	rep.TriesLeft, err = readTries(ctx, c, fidAuthPIN)
	if err != nil {
		if fatal(ctx, err) {
			return fmt.Errorf("inspect card: %w", err)
		}
		rep.TriesErr = err
	}
	return nil
}

// WriteText writes the report for a person to read.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s:\t%s\n", k, fmt.Sprintf(format, args...)) }
	switch {
	case r.TokenErr != nil:
		line("token", "unknown (%v)", r.TokenErr)
	default:
		line("token", "%s (%s)", tokenDescription(r.Token.Type), r.Token.Label)
	}
	if r.Serial != "" {
		line("certificate serial", "%s", r.Serial)
		line("subject", "%s", r.Subject)
		line("issuer", "%s", r.Issuer)
		line("valid", "%s to %s", r.NotBefore.UTC().Format(time.DateOnly), r.NotAfter.UTC().Format(time.DateOnly))
	}
	if r.Chain == nil {
		line("chain", "ok (trusted anchor, JPKI user-authentication profile, valid now)")
	} else {
		line("chain", "FAILED: %v", r.Chain)
	}
	switch {
	case r.TriesErr != nil:
		line("PIN tries left", "unknown (%v)", r.TriesErr)
	case r.TriesLeft == 0:
		line("PIN tries left", "0 (blocked)")
	case r.TriesLeft == 1:
		line("PIN tries left", "1 (doors refuse to spend the last try: see the administrator)")
	default:
		line("PIN tries left", "%d", r.TriesLeft)
	}
	line("APDUs", "%d", r.APDUs)
	return tw.Flush()
}

func tokenDescription(t TokenType) string {
	switch t {
	case TokenMyNumberCard:
		return "My Number Card"
	case TokenJuki:
		return "old Basic Resident Register (住基) card"
	case TokenAndroid:
		return "smartphone certificate (Android)"
	case TokenIOS:
		return "smartphone certificate (iPhone)"
	}
	return strings.TrimSpace(string(t))
}
