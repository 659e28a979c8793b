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

// A slow consumer of stdout must get every byte, however long it takes
// after the process has exited (os/exec's WaitDelay would cut it).
func TestSlowStdoutConsumerGetsEverything(t *testing.T) {
	r := &Runner{WaitDelay: 50 * time.Millisecond}
	slow := &slowWriter{}
	c := r.Command(context.Background(), "/bin/sh", "-c", "head -c 300000 /dev/zero")
	c.Stdout = slow
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if slow.n != 300000 {
		t.Fatalf("got %d bytes", slow.n)
	}
}

type slowWriter struct{ n int }

func (s *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	s.n += len(p)
	return len(p), nil
}

func TestStdinFromReader(t *testing.T) {
	c := (&Runner{}).Command(context.Background(), "/bin/sh", "-c", "wc -c")
	c.Stdin = strings.NewReader(strings.Repeat("x", 100000))
	out, err := c.Output()
	if err != nil || strings.TrimSpace(string(out)) != "100000" {
		t.Fatalf("%q %v", out, err)
	}
	// A process that exits without reading its stdin does not hang Wait.
	c = (&Runner{}).Command(context.Background(), "/bin/true")
	c.Stdin = strings.NewReader(strings.Repeat("x", 1<<20))
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
}
