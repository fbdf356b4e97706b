// Command tobira-cardsim puts a simulated My Number Card into a vpcd reader
// slot, so that pcscd (and tobira through it) sees a card, for tests,
// demos and bring-up.
//
// Usage (every command answers --help):
//
//	tobira-cardsim [--vpcd 127.0.0.1:35963] --cert auth.der [--ca-cert ca.der]
//	               [--key card-key.pem] [--label JPKIAPICCTOKEN2] [--cert-needs-pin]
//	               [--pin 1234] [--tries 3] [--free-area-id ID [--free-area-pin PIN]]
//	               [--remove-after N]
//	tobira-cardsim gen-pki DIR
//
// The first form reads commands from standard input, one per line:
// "insert" (put the card on the reader), "remove" (take it off), "status"
// (answered "ok tries=N signatures=N commands=N": the PIN tries left, the
// signatures made and the commands answered so far), "quit". Each is
// answered on standard output with "ok" or "error: <reason>".
//
// --key gives the card its user-authentication key (PEM, PKCS #8 or
// PKCS #1 RSA), so that it signs in tobira's pin and enroll modes; without
// it the card refuses to sign. --label picks the token (JPKIAPICCTOKEN2 My
// Number Card, JPKIAPICCTOKEN 住基 card, JPKIAPGPSETOKEN Android,
// JPKIAPIOSTOKEN iPhone) and --cert-needs-pin makes the certificate
// readable only after the PIN, as on some smartphone tokens. --tries 0 is
// a blocked card. --free-area-id adds the demo free-area application
// (cardsim.DemoFreeArea) holding that user ID, behind --free-area-pin when
// given. --remove-after N makes the card leave the reader after N commands,
// as a card pulled in the middle of a read.
//
// The second form writes a test PKI into DIR (see jpkitest.Kit): ca.pem
// (trust anchors, two CA generations), card certificates for the usual
// outcomes and card-key.pem, the cards' key for --key.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole command; it returns the exit status (cli.ExitCode).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetIn(stdin)
	return cli.ExitCode(cli.Execute(ctx, root, args, stdout, stderr), stderr)
}

// newRoot builds the command tree: the serving form is the root itself,
// gen-pki its one subcommand.
func newRoot() *cobra.Command {
	var cfg config
	root := &cobra.Command{
		Use:   "tobira-cardsim --cert auth.der [flags]   (then insert / remove / status / quit on stdin)",
		Short: "Put a simulated My Number Card into a vpcd reader slot",
		Long: `tobira-cardsim puts a simulated My Number Card into a vpcd reader slot, so that pcscd
(and tobira through it) sees a card. It then reads commands from standard input, one per
line: insert, remove, status, quit; each is answered with "ok" or "error: <reason>".`,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := cfg.validate(); err != nil {
				return err
			}
			return serve(c.Context(), cfg, c.InOrStdin(), c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	cfg.register(root)
	root.AddCommand(&cobra.Command{
		Use:   "gen-pki DIR",
		Short: "Write a test PKI into DIR: trust anchors, card certificates, the cards' key",
		Args:  cobra.ExactArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return genPKI(args[0], time.Now(), c.OutOrStdout()) },
	})
	return root
}

// serve builds the card and runs the stdin console until "quit", end of
// input or ctx ends.
func serve(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	card, err := cfg.card(log)
	if err != nil {
		return err
	}
	bridge := cardsim.NewBridge(cfg.vpcd, cardsim.VPCD{Log: log})
	defer bridge.Close()
	return console(ctx, stdin, stdout, bridge, card, cfg.connectTimeout)
}

// config is the parsed command line of the serving form.
type config struct {
	vpcd           string
	certPath       string
	caCertPath     string
	keyPath        string
	label          string
	certNeedsPIN   bool
	pin            string
	tries          int
	freeAreaID     string
	freeAreaPIN    string
	removeAfter    int
	connectTimeout time.Duration
}

// validPIN reports whether pin is 4 ASCII digits.
func validPIN(pin string) bool { return len(pin) == 4 && strings.Trim(pin, "0123456789") == "" }

// register binds c's flags to the configuration.
func (c *config) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&c.vpcd, "vpcd", cardsim.DefaultVPCDAddr, "vpcd slot address (35963 is slot 0, 35964 slot 1)")
	fs.StringVar(&c.certPath, "cert", "", `user-authentication certificate for EF 000A (DER or PEM; required unless --label "")`)
	fs.StringVar(&c.caCertPath, "ca-cert", "", "CA certificate for EF 000B (DER or PEM)")
	fs.StringVar(&c.keyPath, "key", "", "user-authentication RSA private key for EF 0017 (PEM, PKCS #8 or PKCS #1); without it the card cannot sign")
	fs.StringVar(&c.label, "label", cardsim.LabelMyNumberCard, `token label of EF 0006 (JPKIAPICCTOKEN2, JPKIAPICCTOKEN, JPKIAPGPSETOKEN, JPKIAPIOSTOKEN); "" makes a card without JPKI-AP`)
	fs.BoolVar(&c.certNeedsPIN, "cert-needs-pin", false, "the certificate is readable only after the PIN (smartphone token behaviour)")
	fs.StringVar(&c.pin, "pin", cardsim.DefaultPIN, "user-authentication PIN (4 digits)")
	fs.IntVar(&c.tries, "tries", cardsim.MaxTries, "PIN tries left (0 = blocked)")
	fs.StringVar(&c.freeAreaID, "free-area-id", "", "add the demo free-area application holding this user ID (printable ASCII, up to 50 bytes)")
	fs.StringVar(&c.freeAreaPIN, "free-area-pin", "", "PIN (4 digits) of the free-area application; none when empty")
	fs.IntVar(&c.removeAfter, "remove-after", 0, "the card leaves the reader after answering this many commands (0 = never)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "how long insert waits for vpcd to accept the card")
}

// validate checks the flags together; a mistake is a usage error.
func (c *config) validate() error {
	if c.certPath == "" && c.label != "" {
		return cli.Usagef(`--cert is required (or --label "" for a card without JPKI-AP)`)
	}
	if !validPIN(c.pin) {
		return cli.Usagef("--pin must be 4 digits")
	}
	if c.tries < 0 || c.tries > cardsim.MaxTries {
		return cli.Usagef("--tries must be 0..%d", cardsim.MaxTries)
	}
	if len(c.freeAreaID) > 50 || strings.IndexFunc(c.freeAreaID, func(r rune) bool { return r < 0x21 || r > 0x7E }) >= 0 {
		return cli.Usagef("--free-area-id must be up to 50 printable ASCII characters without spaces")
	}
	if c.freeAreaPIN != "" && (c.freeAreaID == "" || !validPIN(c.freeAreaPIN)) {
		return cli.Usagef("--free-area-pin must be 4 digits and needs --free-area-id")
	}
	if c.removeAfter < 0 {
		return cli.Usagef("--remove-after must be 0 or more")
	}
	return nil
}

// card builds the simulated card from the configuration; log gets a
// warning when the key does not match the certificate.
func (c config) card(log *slog.Logger) (*cardsim.Card, error) {
	p := cardsim.Profile{TokenLabel: c.label, PIN: c.pin, Tries: c.tries, CertNeedsPIN: c.certNeedsPIN}
	if p.Tries == 0 {
		p.Tries = -1 // blocked; 0 means a fresh card in Profile
	}
	var err error
	if c.certPath != "" {
		if p.AuthCert, err = readCert(c.certPath); err != nil {
			return nil, err
		}
	}
	if c.caCertPath != "" {
		if p.CACert, err = readCert(c.caCertPath); err != nil {
			return nil, err
		}
	}
	if c.keyPath != "" {
		if p.AuthKey, err = readKey(c.keyPath); err != nil {
			return nil, err
		}
		if !keyMatches(p.AuthCert, p.AuthKey) {
			log.Warn("the key does not match the certificate's public key: the card's signatures will not verify",
				"key", c.keyPath, "cert", c.certPath)
		}
	}
	if c.freeAreaID != "" {
		p.FreeArea = cardsim.DemoFreeArea(c.freeAreaID, c.freeAreaPIN)
	}
	card := cardsim.New(p)
	if c.removeAfter > 0 {
		card.SetFault(cardsim.FaultRemove, c.removeAfter)
	}
	return card, nil
}

// keyMatches reports whether der is a certificate for key's public key.
func keyMatches(der []byte, key *rsa.PrivateKey) bool {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return false
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	return ok && pub.Equal(&key.PublicKey)
}

// readKey reads an RSA private key from the first PRIVATE KEY (PKCS #8)
// or RSA PRIVATE KEY (PKCS #1) block of a PEM file.
func readKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, fmt.Errorf("read key %s: no PEM PRIVATE KEY or RSA PRIVATE KEY block", path)
		}
		switch blk.Type {
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("read key %s: parse PKCS #1: %w", path, err)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("read key %s: parse PKCS #8: %w", path, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("read key %s: a %T, want an RSA key", path, k)
			}
			return rk, nil
		}
	}
}

// readCert reads a DER certificate file, or the first CERTIFICATE block of
// a PEM file.
func readCert(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		return b, nil
	}
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, fmt.Errorf("read certificate %s: no PEM CERTIFICATE block", path)
		}
		if blk.Type == "CERTIFICATE" {
			return blk.Bytes, nil
		}
	}
}

// console runs the stdin command loop until "quit", end of input or ctx
// ends.
func console(ctx context.Context, stdin io.Reader, stdout io.Writer, bridge *cardsim.Bridge, card *cardsim.Card, connectTimeout time.Duration) error {
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	reply := func(err error) {
		if err != nil {
			fmt.Fprintf(stdout, "error: %v\n", err)
			return
		}
		fmt.Fprintln(stdout, "ok")
	}
	for {
		var line string
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if err != nil {
				return fmt.Errorf("read commands: %w", err)
			}
			return nil // end of input
		case line = <-lines:
		}
		switch cmd := strings.TrimSpace(line); cmd {
		case "":
		case "insert":
			ictx, cancel := context.WithTimeout(ctx, connectTimeout)
			err := bridge.Insert(ictx, card)
			cancel()
			reply(err)
		case "remove":
			reply(bridge.Remove())
		case "status":
			fmt.Fprintf(stdout, "ok tries=%d signatures=%d commands=%d\n", card.Tries(), card.Signatures(), card.Commands())
		case "quit":
			reply(nil)
			return nil
		default:
			reply(fmt.Errorf("unknown command %q (want insert, remove, status or quit)", cmd))
		}
	}
}

// genPKI writes a jpkitest.Kit into dir.
func genPKI(dir string, now time.Time, stdout io.Writer) error {
	kit, err := jpkitest.NewKit(now)
	if err != nil {
		return err
	}
	paths, err := kit.WriteDir(dir)
	if err != nil {
		return err
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	for _, c := range kit.Cards {
		fmt.Fprintf(stdout, "%s: serial %08x, %s with ca.pem as trust anchor\n", c.Name, c.Serial, c.Outcome)
	}
	fmt.Fprintf(stdout, "a card that signs: tobira-cardsim --cert %s --key %s\n",
		filepath.Join(dir, "card-1.der"), filepath.Join(dir, "card-key.pem"))
	return nil
}
