// Package clitest checks the command lines of tobira's binaries: the help
// of a whole command tree, so that a command added later is covered
// without a new test, and tables of command lines with their exit status
// and output.
package clitest

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/cmd/internal/cli"
)

// Run runs one command line of the binary under test (a fresh tree each
// time) and returns its error.
type Run func(args []string, stdout, stderr io.Writer) error

// CheckHelp walks every command of root (cli.Prepare applied, so the
// help command is there too) and runs `X -h`, `X --help` and `help X`
// for each, and `X help` for each group, through run. Each must succeed
// (exit status 0), print nothing on stderr, and print on stdout a usage
// that names the command's full path.
func CheckHelp(t *testing.T, root *cobra.Command, run Run) {
	t.Helper()
	cli.Prepare(root)
	var paths [][]string
	var visit func(c *cobra.Command, path []string)
	visit = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, s := range c.Commands() {
			visit(s, append(append([]string(nil), path...), s.Name()))
		}
	}
	visit(root, nil)
	if len(paths) < 2 {
		t.Fatalf("%s has no subcommands to check", root.Name())
	}
	for _, path := range paths {
		full := strings.Join(append([]string{root.Name()}, path...), " ")
		lines := [][]string{append(append([]string(nil), path...), "-h"), append(append([]string(nil), path...), "--help"),
			append([]string{"help"}, path...)}
		if c, _, err := root.Find(path); err == nil && c.HasSubCommands() {
			lines = append(lines, append(append([]string(nil), path...), "help"))
		}
		for _, args := range lines {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errOut bytes.Buffer
				if err := run(args, &out, &errOut); err != nil {
					t.Fatalf("%s %s: %v (exit status %d)\n%s", root.Name(), strings.Join(args, " "), err,
						cli.ExitCode(err, io.Discard), &errOut)
				}
				if errOut.Len() > 0 {
					t.Errorf("stderr: %s", &errOut)
				}
				if !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), full) {
					t.Errorf("output does not show the usage of %q:\n%s", full, &out)
				}
			})
		}
	}
}

// Line is one command line and what it must do.
type Line struct {
	// Args is the command line without the program name.
	Args []string
	// Code is the exit status (cli.ExitCode).
	Code int
	// Out and Err must be part of stdout and of stderr (the error and the
	// pointer to the help included).
	Out, Err string
}

// CheckLines runs each line through run and checks its exit status and
// output.
func CheckLines(t *testing.T, run Run, lines []Line) {
	t.Helper()
	for _, l := range lines {
		t.Run(strings.Join(l.Args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.ExitCode(run(l.Args, &stdout, &stderr), &stderr)
			if code != l.Code || !strings.Contains(stdout.String(), l.Out) || !strings.Contains(stderr.String(), l.Err) {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nwant stdout %q, stderr %q", code, l.Code, &stdout, &stderr, l.Out, l.Err)
			}
		})
	}
}
