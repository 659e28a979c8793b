package command

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOutputAndError(t *testing.T) {
	r := &Runner{}
	ctx := context.Background()
	out, err := r.Command(ctx, "/bin/sh", "-c", "echo hello").Output()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("got %q, %v", out, err)
	}
	_, err = r.Command(ctx, "/bin/sh", "-c", "echo 'cannot open pool/x: dataset does not exist' >&2; exit 1").Output()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %T %v", err, err)
	}
	if ce.ExitCode != 1 || !strings.Contains(ce.Stderr, "dataset does not exist") {
		t.Fatalf("bad error %+v", ce)
	}
	if !strings.Contains(err.Error(), `/bin/sh -c "echo`) || !strings.Contains(err.Error(), "dataset does not exist") {
		t.Fatalf("error lacks command line or stderr: %v", err)
	}
}

func TestNotFound(t *testing.T) {
	err := (&Runner{}).Command(context.Background(), "/nonexistent/zfs", "list").Run()
	var ce *Error
	if !errors.As(err, &ce) || ce.ExitCode != -1 || !strings.Contains(err.Error(), "/nonexistent/zfs list") {
		t.Fatalf("got %v", err)
	}
}

func TestContextCancelStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := (&Runner{}).Command(ctx, "/bin/sleep", "30").Run()
	if err == nil {
		t.Fatal("want error from cancelled command")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancel took %v", d)
	}
}

func TestStderrBounded(t *testing.T) {
	b := &tailBuffer{max: 10}
	b.Write([]byte("0123456789abcdef"))
	b.Write([]byte("more"))
	if !strings.HasPrefix(b.String(), "0123456789\n[10 more bytes") {
		t.Fatalf("got %q", b.String())
	}
}

func TestLineQuotes(t *testing.T) {
	if got := Line("zfs", []string{"set", "a:b=x y", ""}); got != `zfs set "a:b=x y" ""` {
		t.Fatal(got)
	}
}
