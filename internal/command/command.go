package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// maxStderr bounds how much of a program's stderr is kept: zfs messages are
// short, and a runaway program must not grow our memory.
const maxStderr = 64 << 10

// Runner starts commands. The zero value is usable and logs nowhere.
type Runner struct {
	// Logger receives one debug line per finished command. Nil discards.
	Logger *slog.Logger
	// WaitDelay bounds how long Wait waits for a killed process's pipes to
	// close after the context is done. Zero means 5s.
	WaitDelay time.Duration
}

// Cmd is one prepared command. Set Stdin/Stdout before Run or Start.
type Cmd struct {
	Path  string
	Args  []string
	Stdin io.Reader
	// Stdout receives standard output when using Run/Start. Output sets it.
	Stdout io.Writer

	r      *Runner
	ctx    context.Context
	cmd    *exec.Cmd
	stderr *tailBuffer
	start  time.Time
	// Our own copies of stdin/stdout streams (see Start).
	stdinPipe  io.WriteCloser
	stdoutDone chan error
}

// Command prepares path with args; nothing runs until Run, Output or Start.
func (r *Runner) Command(ctx context.Context, path string, args ...string) *Cmd {
	c := exec.CommandContext(ctx, path, args...)
	// A cancelled zfs send/recv gets SIGTERM first so it can exit cleanly
	// (recv -s then keeps a resumable state); WaitDelay escalates to SIGKILL.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = r.waitDelay()
	return &Cmd{Path: path, Args: args, r: r, ctx: ctx, cmd: c, stderr: &tailBuffer{max: maxStderr}}
}

func (r *Runner) waitDelay() time.Duration {
	if r == nil || r.WaitDelay == 0 {
		return 5 * time.Second
	}
	return r.WaitDelay
}

// String is the command line, quoted where needed, for logs and errors.
func (c *Cmd) String() string { return Line(c.Path, c.Args) }

// Line renders a command line for humans.
func Line(path string, args []string) string {
	var b strings.Builder
	b.WriteString(path)
	for _, a := range args {
		b.WriteByte(' ')
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`") {
			fmt.Fprintf(&b, "%q", a)
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// Run runs the command to completion.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output.
func (c *Cmd) Output() ([]byte, error) {
	var out bytes.Buffer
	c.Stdout = &out
	err := c.Run()
	return out.Bytes(), err
}

// Start starts the command.
//
// Streams that are not files are copied by our own goroutines rather than
// os/exec's: exec's WaitDelay starts when the process exits, and would cut
// a zfs send whose last buffered megabytes a slow zfs recv has not consumed
// yet. Here stdout is drained to EOF before Wait returns (or until the
// context ends), and stdin stops being fed when the process exits.
func (c *Cmd) Start() error {
	var stdoutPipe io.ReadCloser
	var err error
	switch w := c.Stdout.(type) {
	case nil:
	case *os.File:
		c.cmd.Stdout = w
	default:
		if stdoutPipe, err = c.cmd.StdoutPipe(); err != nil {
			return &Error{Path: c.Path, Args: c.Args, ExitCode: -1, Err: err}
		}
	}
	switch r := c.Stdin.(type) {
	case nil:
	case *os.File:
		c.cmd.Stdin = r
	default:
		if c.stdinPipe, err = c.cmd.StdinPipe(); err != nil {
			return &Error{Path: c.Path, Args: c.Args, ExitCode: -1, Err: err}
		}
	}
	c.cmd.Stderr = c.stderr
	c.start = time.Now()
	if err := c.cmd.Start(); err != nil {
		return &Error{Path: c.Path, Args: c.Args, ExitCode: -1, Err: err}
	}
	if stdoutPipe != nil {
		growPipe(stdoutPipe)
		c.stdoutDone = make(chan error, 1)
		go func() {
			_, err := copyStream(c.Stdout, stdoutPipe)
			c.stdoutDone <- err
		}()
	}
	if c.stdinPipe != nil {
		growPipe(c.stdinPipe)
		go func() {
			copyStream(c.stdinPipe, c.Stdin) // EPIPE when the process exits early: expected
			c.stdinPipe.Close()
		}()
	}
	return nil
}

// streamBuf is the copy buffer for zfs send/recv streams. io.Copy's 32 KiB
// means a syscall per 32 KiB on each side; under emulation (and on busy
// hosts) that overhead was a fifth of replication throughput.
const streamBuf = 1 << 20

func copyStream(dst io.Writer, src io.Reader) (int64, error) {
	// Hide ReaderFrom/WriterTo: *os.File's versions fall back to 32 KiB
	// copies for pipes, and we want our buffer.
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, streamBuf))
}

// growPipe raises a pipe's kernel buffer to 1 MiB (the default maximum for
// an unprivileged process) so each read or write moves more. Best effort.
// (SyscallConn, not Fd: Fd would switch the pipe to blocking mode.)
func growPipe(p any) {
	sc, ok := p.(syscall.Conn)
	if !ok {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.Syscall(syscall.SYS_FCNTL, fd, 1031 /* F_SETPIPE_SZ */, streamBuf)
		})
	}
}

// Wait waits for a started command and classifies its failure.
func (c *Cmd) Wait() error {
	var copyErr error
	if c.stdoutDone != nil {
		select {
		case copyErr = <-c.stdoutDone:
		case <-c.ctx.Done():
		}
	}
	err := c.cmd.Wait()
	if err == nil && copyErr != nil {
		err = fmt.Errorf("copying stdout: %w", copyErr)
	}
	d := time.Since(c.start)
	if c.r != nil && c.r.Logger != nil {
		c.r.Logger.Debug("exec", "cmd", c.String(), "duration", d, "err", err)
	}
	if err == nil {
		return nil
	}
	e := &Error{Path: c.Path, Args: c.Args, Stderr: strings.TrimSpace(c.stderr.String()), ExitCode: -1, Duration: d, Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		e.ExitCode = ee.ExitCode()
	}
	return e
}

// Error is a failed command: the command line, exit code and the program's
// own message.
type Error struct {
	Path     string
	Args     []string
	ExitCode int // -1 when the program did not exit normally (signal, not started)
	Stderr   string
	Duration time.Duration
	Err      error
}

func (e *Error) Error() string {
	msg := e.Stderr
	if msg == "" {
		msg = e.Err.Error()
	} else if e.ExitCode < 0 {
		msg = e.Err.Error() + ": " + msg
	}
	return fmt.Sprintf("%s: %s", Line(e.Path, e.Args), msg)
}

func (e *Error) Unwrap() error { return e.Err }

// tailBuffer keeps the first max bytes written; later bytes are counted but
// dropped, because the first lines of a zfs error carry the reason.
type tailBuffer struct {
	buf     bytes.Buffer
	max     int
	dropped int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	room := t.max - t.buf.Len()
	if room >= len(p) {
		return t.buf.Write(p)
	}
	if room > 0 {
		t.buf.Write(p[:room])
	}
	t.dropped += len(p) - max(room, 0)
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if t.dropped > 0 {
		return t.buf.String() + fmt.Sprintf("\n[%d more bytes of stderr dropped]", t.dropped)
	}
	return t.buf.String()
}
