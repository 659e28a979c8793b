package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The control API is the daemon's local administration interface: HTTP with
// JSON bodies on a unix socket that only root can open. `zrepl-ha status`,
// `failover --force`, `demote` and `switchover` are its clients. Paths carry
// a version (/v1/) so that a newer CLI talking to an older daemon fails with
// a 404 instead of misreading a changed body; fields are only ever added.
//
//	GET  /v1/status                         -> Status
//	POST /v1/failover?ignore_peer=true|false -> {}
//	POST /v1/demote                          -> {}
//	POST /v1/switchover                      -> {}
//
// An error is {"error": "..."}: 409 when the state machine refuses the
// request (the body says why), 503 when the failover loop cannot answer.

// Controller is what the control API drives; *Node satisfies it.
type Controller interface {
	Status() Status
	Promote(ctx context.Context, ignorePeer bool) error
	Demote(ctx context.Context) error
	Switchover(ctx context.Context) error
}

var _ Controller = (*Node)(nil)

// Bounds of the control server. An admin request only queues an event and
// waits for the machine's verdict (the executor carries out the actions
// afterwards), so a minute is far more than it needs; the bound keeps a
// wedged loop from piling up connections.
const (
	controlRequestTimeout = time.Minute
	controlHeaderTimeout  = 5 * time.Second
	controlIdleTimeout    = 30 * time.Second
	controlShutdownGrace  = 5 * time.Second
	// controlProbeTimeout bounds the check for another daemon on the
	// socket; a live daemon accepts at once.
	controlProbeTimeout = time.Second
)

// ServeControl serves the control API for c on the unix socket at path until
// ctx ends, then stops accepting, lets running requests finish for a few
// seconds and removes the socket. It refuses to start when another process
// answers on path, so that a second daemon cannot steal the first one's
// socket; a socket file nobody answers on is left over from a crash and is
// replaced.
func ServeControl(ctx context.Context, path string, c Controller, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// 0700: the socket's own mode is set only after bind, so a directory
	// that only root can enter covers that moment. An existing directory
	// is left as the admin (or systemd's RuntimeDirectory=) made it.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	if err := removeStaleSocket(ctx, path); err != nil {
		return err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	// The API promotes and demotes: root only.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	srv := &http.Server{
		Handler:           controlHandler(c, log),
		ReadHeaderTimeout: controlHeaderTimeout,
		ReadTimeout:       controlHeaderTimeout,
		WriteTimeout:      controlRequestTimeout + controlHeaderTimeout,
		IdleTimeout:       controlIdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("control API listening", "socket", path)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		// Serve closed the listener, which unlinks the socket.
		return fmt.Errorf("control API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), controlShutdownGrace)
	defer cancel()
	// Shutdown closes the listener; a *net.UnixListener made by Listen
	// unlinks its socket file on Close.
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		log.Warn("control API: requests still running at shutdown", "err", err)
	}
	<-done
	return nil
}

// removeStaleSocket makes path free for a new socket: nothing there, or a
// socket that nobody answers on. Anything else is refused.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s exists and is not a socket; refusing to remove it", path)
	}
	d := net.Dialer{Timeout: controlProbeTimeout}
	conn, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another zrepl-ha daemon answers on %s; refusing to start a second one", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: cannot tell whether a daemon answers on it: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale control socket: %w", err)
	}
	return nil
}

// controlError is the body of every error answer.
type controlError struct {
	Error string `json:"error"`
}

func controlHandler(c Controller, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Status())
	})
	admin := func(name string, do func(ctx context.Context, q url.Values) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), controlRequestTimeout)
			defer cancel()
			q := r.URL.Query()
			log.Info("control: admin request", "request", name, "query", q.Encode())
			if err := do(ctx, q); err != nil {
				code := controlStatusCode(err)
				log.Warn("control: admin request failed", "request", name, "err", err, "http_status", code)
				writeJSON(w, code, controlError{Error: err.Error()})
				return
			}
			log.Info("control: admin request accepted", "request", name)
			writeJSON(w, http.StatusOK, struct{}{})
		}
	}
	mux.HandleFunc("POST /v1/failover", admin("failover", func(ctx context.Context, q url.Values) error {
		ignore := false
		if v := q.Get("ignore_peer"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return badRequest{fmt.Errorf("ignore_peer=%q: want true or false", v)}
			}
			ignore = b
		}
		return c.Promote(ctx, ignore)
	}))
	mux.HandleFunc("POST /v1/demote", admin("demote", func(ctx context.Context, _ url.Values) error {
		return c.Demote(ctx)
	}))
	mux.HandleFunc("POST /v1/switchover", admin("switchover", func(ctx context.Context, _ url.Values) error {
		return c.Switchover(ctx)
	}))
	// Without these the mux would answer a wrong method in plain text, and
	// the catch-all below would call it "not found".
	for _, p := range []string{"/v1/status", "/v1/failover", "/v1/demote", "/v1/switchover"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusMethodNotAllowed, controlError{Error: fmt.Sprintf("%s does not take %s", r.URL.Path, r.Method)})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, controlError{Error: fmt.Sprintf("no control endpoint %s %s", r.Method, r.URL.Path)})
	})
	return mux
}

// badRequest marks a malformed request, as opposed to a refusal.
type badRequest struct{ error }

func (e badRequest) Unwrap() error { return e.error }

// controlStatusCode maps a Controller error to HTTP. The machine answers an
// admin request it will not carry out with an error that says why (already
// active, peer visibly serving, busy...); those are refusals, 409. Only a
// loop that is not running or did not answer in time is a server problem.
func controlStatusCode(err error) int {
	var br badRequest
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotRunning), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusConflict
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrRefused matches a ControlError for a request the daemon's state machine
// refused (HTTP 409); the error's text is the daemon's reason.
var ErrRefused = errors.New("refused by the daemon")

// ControlError is an error answer from the daemon.
type ControlError struct {
	HTTPStatus int
	Msg        string // the daemon's message, shown to the admin as is
}

func (e *ControlError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrRefused) true for refusals.
func (e *ControlError) Is(target error) bool {
	return target == ErrRefused && e.HTTPStatus == http.StatusConflict
}

// DaemonNotRunningError is returned by ControlClient when nothing listens on
// the socket.
type DaemonNotRunningError struct {
	Path string
	Err  error
}

func (e *DaemonNotRunningError) Error() string {
	return fmt.Sprintf("no zrepl-ha daemon answers on %s: is `zrepl-ha run` started?", e.Path)
}

func (e *DaemonNotRunningError) Unwrap() error { return e.Err }

// ControlClient talks to the control API of the daemon on this machine.
type ControlClient struct {
	Path string // the unix socket, node.control_socket in the config
}

// Status returns the daemon's status.
func (c ControlClient) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", &s)
	return s, err
}

// Promote asks the daemon to promote this node (`failover --force`).
func (c ControlClient) Promote(ctx context.Context, ignorePeer bool) error {
	return c.do(ctx, http.MethodPost, "/v1/failover?ignore_peer="+strconv.FormatBool(ignorePeer), nil)
}

// Demote asks the daemon to demote this node.
func (c ControlClient) Demote(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/demote", nil)
}

// Switchover asks the active daemon to hand over to its passive peer.
func (c ControlClient) Switchover(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/switchover", nil)
}

func (c ControlClient) do(ctx context.Context, method, target string, out any) error {
	hc := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", c.Path)
			},
			DisableKeepAlives: true,
		},
		// Backstop for a caller without a deadline: the server gives up
		// on a request after controlRequestTimeout.
		Timeout: controlRequestTimeout + 10*time.Second,
	}
	// The host part is ignored: the dialer always opens the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://zrepl-ha"+target, nil)
	if err != nil {
		return fmt.Errorf("control request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return &DaemonNotRunningError{Path: c.Path, Err: err}
		}
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("control socket %s: %w (the control API is for root only)", c.Path, err)
		}
		return fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("control socket %s: reading the answer: %w", c.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var ce controlError
		if json.Unmarshal(body, &ce) != nil || ce.Error == "" {
			ce.Error = fmt.Sprintf("daemon answered %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return &ControlError{HTTPStatus: resp.StatusCode, Msg: ce.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("control socket %s: decoding the answer: %w", c.Path, err)
	}
	return nil
}
