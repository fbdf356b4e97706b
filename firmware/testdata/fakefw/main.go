// Command fakefw stands in for the tobira edge binary in the firmware
// tests. Its version and behaviour are baked in at link time:
//
//	go build -ldflags "-X main.version=2.0.0 -X main.mode=crash" ./testdata/fakefw
//
// Modes: healthy (Boot, ReportHealthy, exit 0), exit-at-start (exit 3
// before Boot), crash (Boot, then panic), never-healthy (Boot, then
// Trial.Supervise until the deadline rolls it back, exit 5). Boot's
// ErrRolledBack exits 4. The environment gives FW_ROOT, FW_DEADLINE,
// FW_MAX_ATTEMPTS and INVOCATION_ID. Each run prints one line:
// "<version> <mode> <outcome>".
//
// "fakefw install ROOT ENVELOPE BINARY PUBKEY" installs a release the way
// a running controller would (used to kill -9 an install midway).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/tobira-ac/tobira/firmware"
)

var (
	version = "0.0.0"
	mode    = "healthy"
)

func main() {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) > 1 && os.Args[1] == "install" {
		if err := install(ctx, log, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "install:", err)
			os.Exit(1)
		}
		fmt.Println(version, "install", "ok")
		return
	}
	if mode == "exit-at-start" {
		fmt.Println(version, mode, "exit")
		os.Exit(3)
	}
	deadline, _ := time.ParseDuration(os.Getenv("FW_DEADLINE"))
	attempts, _ := strconv.Atoi(os.Getenv("FW_MAX_ATTEMPTS"))
	opts := firmware.GateOptions{
		Root:           os.Getenv("FW_ROOT"),
		MaxAttempts:    attempts,
		HealthDeadline: deadline,
		InvocationID:   os.Getenv("INVOCATION_ID"),
		Logger:         log,
	}
	trial, err := firmware.Boot(ctx, opts)
	if errors.Is(err, firmware.ErrRolledBack) {
		fmt.Println(version, mode, "rolled-back")
		os.Exit(4)
	}
	if err != nil {
		fmt.Println(version, mode, "boot-error")
		fmt.Fprintln(os.Stderr, err)
		os.Exit(6)
	}
	switch mode {
	case "healthy":
		if _, err := trial.ReportHealthy(ctx); err != nil {
			fmt.Println(version, mode, "commit-error")
			fmt.Fprintln(os.Stderr, err)
			os.Exit(7)
		}
		fmt.Println(version, mode, "healthy")
	case "crash":
		fmt.Println(version, mode, "crash")
		panic("fakefw: crash loop")
	case "never-healthy":
		err := trial.Supervise(ctx)
		fmt.Println(version, mode, "supervise-ended")
		fmt.Fprintln(os.Stderr, err)
		os.Exit(5)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(8)
	}
}

func install(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) != 4 {
		return errors.New("want ROOT ENVELOPE BINARY PUBKEY")
	}
	env, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	v, err := firmware.ReadVerifier(args[3])
	if err != nil {
		return err
	}
	u := &firmware.Updater{Root: args[0], Verifier: v, Logger: log, ChunkSize: 16 << 10}
	_, err = u.Install(ctx, env, firmware.FileFetcher{Path: args[2]})
	return err
}
