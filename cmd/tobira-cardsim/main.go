// Command tobira-cardsim puts a simulated My Number Card into a vpcd reader
// slot, so that pcscd (and tobira through it) sees a card, for tests,
// demos and bring-up.
//
// Usage:
//
//	tobira-cardsim [--vpcd 127.0.0.1:35963] --cert auth.der [--ca-cert ca.der]
//	               [--label JPKIAPICCTOKEN2] [--pin 1234] [--tries 3]
//	tobira-cardsim gen-pki DIR
//
// The first form reads commands from standard input, one per line:
// "insert" (put the card on the reader), "remove" (take it off), "quit".
// Each is answered on standard output with "ok" or "error: <reason>".
// The second form writes a test CA and a set of card certificates into DIR
// (see jpkitest.Kit).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/jpkitest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "gen-pki" {
		if err := genPKI(args[1:], time.Now(), stdout); err != nil {
			fmt.Fprintf(stderr, "tobira-cardsim gen-pki: %v\n", err)
			return 1
		}
		return 0
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tobira-cardsim: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	card, err := cfg.card()
	if err != nil {
		fmt.Fprintf(stderr, "tobira-cardsim: %v\n", err)
		return 1
	}
	bridge := cardsim.NewBridge(cfg.vpcd, cardsim.VPCD{Log: log})
	defer bridge.Close()
	if err := console(ctx, stdin, stdout, bridge, card, cfg.connectTimeout); err != nil {
		fmt.Fprintf(stderr, "tobira-cardsim: %v\n", err)
		return 1
	}
	return 0
}

// config is the parsed command line of the serving form.
type config struct {
	vpcd           string
	certPath       string
	caCertPath     string
	label          string
	pin            string
	tries          int
	connectTimeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("tobira-cardsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: tobira-cardsim [flags]   (then insert / remove / quit on stdin)\n       tobira-cardsim gen-pki DIR\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.vpcd, "vpcd", cardsim.DefaultVPCDAddr, "vpcd slot address (35963 is slot 0, 35964 slot 1)")
	fs.StringVar(&c.certPath, "cert", "", "user-authentication certificate for EF 000A (DER or PEM; required)")
	fs.StringVar(&c.caCertPath, "ca-cert", "", "CA certificate for EF 000B (DER or PEM)")
	fs.StringVar(&c.label, "label", cardsim.LabelMyNumberCard, `token label of EF 0006; "" makes a card without JPKI-AP`)
	fs.StringVar(&c.pin, "pin", cardsim.DefaultPIN, "user-authentication PIN (4 digits)")
	fs.IntVar(&c.tries, "tries", cardsim.MaxTries, "PIN tries left (0 = blocked)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "how long insert waits for vpcd to accept the card")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.certPath == "" {
		return config{}, errors.New("--cert is required")
	}
	if len(c.pin) != 4 || strings.Trim(c.pin, "0123456789") != "" {
		return config{}, fmt.Errorf("--pin must be 4 digits")
	}
	if c.tries < 0 || c.tries > cardsim.MaxTries {
		return config{}, fmt.Errorf("--tries must be 0..%d", cardsim.MaxTries)
	}
	return c, nil
}

// card builds the simulated card from the configuration.
func (c config) card() (*cardsim.Card, error) {
	cert, err := readCert(c.certPath)
	if err != nil {
		return nil, err
	}
	var ca []byte
	if c.caCertPath != "" {
		if ca, err = readCert(c.caCertPath); err != nil {
			return nil, err
		}
	}
	tries := c.tries
	if tries == 0 {
		tries = -1 // blocked; 0 means a fresh card in Profile
	}
	return cardsim.New(cardsim.Profile{TokenLabel: c.label, AuthCert: cert, CACert: ca, PIN: c.pin, Tries: tries}), nil
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
		case "quit":
			reply(nil)
			return nil
		default:
			reply(fmt.Errorf("unknown command %q (want insert, remove or quit)", cmd))
		}
	}
}

// genPKI writes a jpkitest.Kit into the directory named by args.
func genPKI(args []string, now time.Time, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: tobira-cardsim gen-pki DIR")
	}
	kit, err := jpkitest.NewKit(now)
	if err != nil {
		return err
	}
	paths, err := kit.WriteDir(args[0])
	if err != nil {
		return err
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	for _, c := range kit.Cards {
		fmt.Fprintf(stdout, "%s: serial %08x, %s with ca.pem as trust anchor\n", c.Name, c.Serial, c.Outcome)
	}
	return nil
}
