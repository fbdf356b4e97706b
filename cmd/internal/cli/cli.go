// Package cli holds the command-line conventions of tobira's binaries
// (tobira, tobira-hq, tobira-release, tobira-cardsim), built on
// github.com/spf13/cobra and its pflag:
//
//   - every command answers `help`, `-h` and `--help` with its usage on
//     stdout and exit status 0; a group of commands also answers
//     `GROUP help [COMMAND]`;
//   - flags are GNU `--flag`s, accepted before and after positional
//     arguments and after the subcommand;
//   - a command-line mistake exits 2, any other failure 1, and the message
//     names the full command ("tobira-hq release publish: ...").
//
// A binary's main is cli.Main(run), where run builds its command tree and
// calls Execute.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// ErrUsage marks a command-line mistake (exit status 2). Every error
// that cobra or pflag raise before a command runs wraps it, and so does
// every error made by Usagef.
var ErrUsage = errors.New("usage")

// usageError is a command-line mistake: its message without a prefix,
// and errors.Is(err, ErrUsage).
type usageError struct{ err error }

// Error returns the mistake.
func (e usageError) Error() string { return e.err.Error() }

// Unwrap returns the mistake.
func (e usageError) Unwrap() error { return e.err }

// Is reports that a usage error is ErrUsage.
func (e usageError) Is(target error) bool { return target == ErrUsage }

// Usagef returns a command-line mistake described by format and args.
// %w works as in fmt.Errorf.
func Usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// Error is a failed command: the full path of the command (as in
// "tobira-hq release publish") and what went wrong.
type Error struct {
	// Command is the full path of the command that failed.
	Command string
	// Err is the failure; it wraps ErrUsage for a command-line mistake.
	Err error
}

// Error names the command and the failure.
func (e *Error) Error() string { return e.Command + ": " + e.Err.Error() }

// Unwrap returns the failure.
func (e *Error) Unwrap() error { return e.Err }

// runError marks an error returned by a command's RunE, as opposed to
// one raised by cobra while parsing the command line.
type runError struct{ err error }

// Error returns the command's error.
func (e runError) Error() string { return e.err.Error() }

// Unwrap returns the command's error.
func (e runError) Unwrap() error { return e.err }

// Run runs one command line of a binary: args without the program name,
// output on stdout and stderr.
type Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs the process's command line through run, with a context that
// ends on SIGINT or SIGTERM, and exits with ExitCode's status.
func Main(run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(ExitCode(err, os.Stderr))
}

// Execute runs the command line args against the tree of root, with its
// output on stdout and stderr and ctx as every command's context. It
// returns nil or an *Error.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) error {
	Prepare(root)
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	c, err := root.ExecuteContextC(ctx)
	if err == nil {
		return nil
	}
	if c == nil {
		c = root
	}
	var re runError
	if errors.As(err, &re) {
		return &Error{Command: c.CommandPath(), Err: re.err}
	}
	return &Error{Command: c.CommandPath(), Err: usageError{err}}
}

// ExitCode writes err (if any) to stderr and returns the exit status of
// the process: 0 without an error, 2 for a command-line mistake (followed
// by a pointer to the command's help), 1 otherwise.
func ExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, err)
	if !errors.Is(err, ErrUsage) {
		return 1
	}
	var e *Error
	if errors.As(err, &e) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", e.Command)
	}
	return 2
}

// prepared marks a tree that Prepare has walked.
const prepared = "tobira-cli-prepared"

// Prepare applies the conventions to the tree of root; Execute calls it,
// and a test that walks the tree before executing it may call it first.
// It is idempotent. Errors and usage are not printed by cobra (ExitCode
// prints them); a flag mistake is a usage error; a command with
// subcommands and no Run of its own answers "help" and refuses a missing
// or unknown subcommand; a leaf command without an Args rule takes no
// positional arguments; every RunE error is told apart from the mistakes
// cobra finds in the command line.
func Prepare(root *cobra.Command) {
	if root.Annotations[prepared] != "" {
		return
	}
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[prepared] = "yes"
	root.SilenceErrors, root.SilenceUsage = true, true
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{dashHint(err)} })
	root.SetHelpCommand(helpCommand())
	if root.Version != "" {
		root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	}
	root.InitDefaultHelpCmd()
	walk(root, prepareCommand)
}

// singleDash matches pflag's error for a long flag given with one dash
// (-config), as the standard flag package accepted.
var singleDash = regexp.MustCompile(`^unknown shorthand flag: '.' in -([a-zA-Z][a-zA-Z-]+)$`)

// dashHint adds to the error of a long flag given with one dash how to
// spell it.
func dashHint(err error) error {
	if m := singleDash.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%w (long flags take two dashes: --%s)", err, m[1])
	}
	return err
}

// walk calls f on c and every command below it.
func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walk(sub, f)
	}
}

// prepareCommand applies the conventions to one command.
func prepareCommand(c *cobra.Command) {
	switch {
	case c.HasSubCommands() && c.Run == nil && c.RunE == nil:
		c.RunE = runGroup
		c.Args = cobra.ArbitraryArgs
	case c.HasSubCommands() && c.RunE != nil:
		answerHelp(c)
	}
	if c.Args == nil {
		c.Args = cobra.NoArgs
	}
	if run := c.RunE; run != nil {
		c.RunE = func(c *cobra.Command, args []string) error {
			err := run(c, args)
			if err == nil || errors.Is(err, ErrUsage) {
				return err
			}
			return runError{err}
		}
	}
}

// runGroup is the Run of a group of commands: "GROUP help [COMMAND]"
// shows help, anything else is a mistake (the subcommands themselves are
// found by cobra before).
func runGroup(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return Usagef("missing command: want %s", subcommandNames(c))
	}
	if args[0] == "help" {
		return helpFor(c, args[1:])
	}
	msg := fmt.Sprintf("unknown command %q: want %s", args[0], subcommandNames(c))
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	return Usagef("%s", msg)
}

// answerHelp makes "X help [COMMAND]" work on a command X that has both
// subcommands and a Run of its own.
func answerHelp(c *cobra.Command) {
	args, run := c.Args, c.RunE
	if args == nil {
		args = cobra.NoArgs
	}
	c.Args = func(c *cobra.Command, a []string) error {
		if len(a) > 0 && a[0] == "help" {
			return nil
		}
		return args(c, a)
	}
	c.RunE = func(c *cobra.Command, a []string) error {
		if len(a) > 0 && a[0] == "help" {
			return helpFor(c, a[1:])
		}
		return run(c, a)
	}
}

// subcommandNames lists the commands of group c.
func subcommandNames(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}

// helpCommand is the root's "help [COMMAND...]": the help of the command
// named by the path below the root; an unknown path is a usage error.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND...]",
		Short: "Show the help of a command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return helpFor(c.Root(), args)
		},
	}
}

// helpFor shows the help of the command at path below c.
func helpFor(c *cobra.Command, path []string) error {
	target, rest, err := c.Find(path)
	if err != nil || len(rest) > 0 {
		return Usagef("unknown help topic %q", strings.Join(path, " "))
	}
	return target.Help()
}

// OrDash returns s, or "-" when s is empty: an empty cell of a table.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
