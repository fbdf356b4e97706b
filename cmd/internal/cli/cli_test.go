package cli_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
	"github.com/tobira-ac/tobira/cmd/internal/cli/clitest"
)

// errBroken is what the "fail" command fails with.
var errBroken = errors.New("broken")

// newTree is a small tree: a group with a leaf, a command with both
// subcommands and a Run, and leaves that fail at run time or with a
// usage error.
func newTree() *cobra.Command {
	root := &cobra.Command{Use: "prog", Version: "1.0"}
	group := &cobra.Command{Use: "group", Short: "a group"}
	var n int
	leaf := &cobra.Command{Use: "leaf ARG", Args: cobra.ExactArgs(1), RunE: func(c *cobra.Command, args []string) error {
		_, err := io.WriteString(c.OutOrStdout(), "leaf "+args[0]+" "+strings.Repeat("n", n))
		return err
	}}
	leaf.Flags().IntVar(&n, "n", 0, "a number")
	group.AddCommand(leaf)
	both := &cobra.Command{Use: "both", RunE: func(c *cobra.Command, _ []string) error {
		_, err := io.WriteString(c.OutOrStdout(), "both ran")
		return err
	}}
	both.AddCommand(&cobra.Command{Use: "sub", RunE: func(*cobra.Command, []string) error { return nil }})
	fail := &cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return errBroken }}
	misuse := &cobra.Command{Use: "misuse", RunE: func(*cobra.Command, []string) error { return cli.Usagef("bad %s", "input") }}
	root.AddCommand(group, both, fail, misuse)
	return root
}

func TestExecute(t *testing.T) {
	for _, tt := range []struct {
		args     string
		wantCode int
		wantOut  string
		wantErr  string
		is       error
	}{
		{"group leaf x --n 2", 0, "leaf x nn", "", nil},
		{"group leaf --n 3 y", 0, "leaf y nnn", "", nil},
		{"both", 0, "both ran", "", nil},
		{"both help", 0, "prog both [command]", "", nil},
		{"both help sub", 0, "prog both sub", "", nil},
		{"group help leaf", 0, "prog group leaf ARG", "", nil},
		{"--version", 0, "prog 1.0\n", "", nil},
		{"fail", 1, "", "prog fail: broken\n", errBroken},
		{"misuse", 2, "", "prog misuse: bad input\nRun 'prog misuse --help' for usage.\n", cli.ErrUsage},
		{"", 2, "", "prog: missing command: want both, fail, group, misuse", cli.ErrUsage},
		{"group", 2, "", "prog group: missing command: want leaf", cli.ErrUsage},
		{"group lef", 2, "", `prog group: unknown command "lef": want leaf (did you mean leaf?)`, cli.ErrUsage},
		{"group leaf", 2, "", "prog group leaf: accepts 1 arg(s), received 0", cli.ErrUsage},
		{"group leaf x --n two", 2, "", `prog group leaf: invalid argument "two" for "--n" flag`, cli.ErrUsage},
		{"group leaf x -n 2", 2, "", "prog group leaf: unknown shorthand flag: 'n' in -n\n", cli.ErrUsage},
		{"group leaf x -n2", 2, "", "prog group leaf: unknown shorthand flag: 'n' in -n2\n", cli.ErrUsage},
		{"group leaf x -count 2", 2, "", "prog group leaf: unknown shorthand flag: 'c' in -count (long flags take two dashes: --count)", cli.ErrUsage},
		{"fail extra", 2, "", `prog fail: unknown command "extra" for "prog fail"`, cli.ErrUsage},
		{"both extra", 2, "", `prog both: unknown command "extra" for "prog both"`, cli.ErrUsage},
		{"help nothing", 2, "", `prog help: unknown help topic "nothing"`, cli.ErrUsage},
	} {
		t.Run(tt.args, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := cli.Execute(t.Context(), newTree(), strings.Fields(tt.args), &out, &errOut)
			code := cli.ExitCode(err, &errOut)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("exit %d, want %d\nstdout: %q\nstderr: %q\nwant stdout %q, stderr %q", code, tt.wantCode, &out, &errOut, tt.wantOut, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			var e *cli.Error
			if err != nil && !errors.As(err, &e) {
				t.Errorf("error %T is not a *cli.Error", err)
			}
		})
	}
}

// TestCheckHelp runs the help walker on the small tree, prepared twice.
func TestCheckHelp(t *testing.T) {
	root := newTree()
	cli.Prepare(root)
	clitest.CheckHelp(t, root, func(args []string, stdout, stderr io.Writer) error {
		return cli.Execute(t.Context(), newTree(), args, stdout, stderr)
	})
}

func TestOrDash(t *testing.T) {
	if cli.OrDash("") != "-" || cli.OrDash("x") != "x" {
		t.Error("OrDash")
	}
}
