package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport"
)

// certInitOptions are the flags of `zrepl-ha cert init`.
type certInitOptions struct {
	Node  string // this node's name (node.name), the file names and the certificate's CN
	Dir   string // where NODE.crt and NODE.key go
	Days  int    // validity
	Force bool   // replace existing files
	Peer  string // the peer's name, only to fill in the printed YAML; optional
	Now   time.Time
}

const (
	certDefaultDays = 3650
	certMaxDays     = 36500
	// certPeerPlaceholder stands for the peer's name when --peer is not given.
	certPeerPlaceholder = "<peer>"
)

// certDefaultDir is where the configuration lives.
var certDefaultDir = filepath.Dir(config.DefaultPath)

func newCertCommand() *cli.Command {
	return &cli.Command{
		Name:  "cert",
		Usage: "make the TLS key and certificate of this node",
		Description: "The two nodes authenticate each other with mutual TLS: each node has its own key\n" +
			"and a self-signed certificate, and each node's configuration pins the other's\n" +
			"certificate (transport.tls.peer_cert). There is no CA. See docs/transport.md.\n\n" +
			"Example:\n" +
			"   zrepl-ha cert init --node alpha --peer beta",
		Commands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "write a new key and self-signed certificate for this node",
				UsageText: "zrepl-ha cert init --node NAME [--dir DIR] [--days N] [--peer NAME] [--force]",
				Description: "Writes DIR/NAME.key (mode 0600) and DIR/NAME.crt (mode 0644), creating DIR\n" +
					"(mode 0700) if needed, then prints the certificate's SHA-256 fingerprint, what to\n" +
					"copy to the peer and the transport.tls section of this node's configuration.\n" +
					"Run it once on each node. Existing files are never overwritten without --force;\n" +
					"after --force the peer must be given the new certificate, since it pins the old one.\n\n" +
					"Example:\n" +
					"   zrepl-ha cert init --node alpha --peer beta\n" +
					"   zrepl-ha cert init --node beta --dir /etc/zrepl-ha --days 3650 --peer alpha",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "node", Usage: "this node's `NAME` (node.name in its configuration); required"},
					&cli.StringFlag{Name: "dir", Value: certDefaultDir, Usage: "`DIR` to write NAME.crt and NAME.key into", TakesFile: true},
					&cli.IntFlag{Name: "days", Value: certDefaultDays, Usage: "the certificate is valid for `N` days"},
					&cli.StringFlag{Name: "peer", Usage: "the peer's `NAME`, to fill in the printed configuration"},
					&cli.BoolFlag{Name: "force", Usage: "replace an existing key and certificate"},
				},
				Action: func(ctx context.Context, c *cli.Command) error {
					if c.Args().Present() {
						return &usageError{fmt.Sprintf("cert init takes no arguments (got %q); see '%s --help'", c.Args().Slice(), c.FullName())}
					}
					return runCertInit(ctx, stdout(c), certInitOptions{
						Node: c.String("node"), Dir: c.String("dir"), Days: c.Int("days"),
						Force: c.Bool("force"), Peer: c.String("peer"),
					})
				},
			},
		},
	}
}

// certExistsError: the key or certificate is already there and --force was
// not given. Exit code 1; errors.Is(err, fs.ErrExist) holds.
type certExistsError struct{ paths []string }

func (e *certExistsError) Error() string {
	them := "them"
	if len(e.paths) == 1 {
		them = "it"
	}
	return fmt.Sprintf("refusing to overwrite %s: use --force to replace %s, then give the peer the new certificate (it pins the old one)",
		strings.Join(e.paths, " and "), them)
}
func (e *certExistsError) ExitCode() int { return exitFailure }
func (e *certExistsError) Unwrap() error { return fs.ErrExist }

func (o certInitOptions) check() error {
	// peerNameRE is the configuration's rule for node.name and peer.name.
	switch {
	case o.Node == "":
		return &usageError{"cert init: --node NAME is required (this node's node.name); see 'zrepl-ha cert init --help'"}
	case !peerNameRE.MatchString(o.Node):
		return &usageError{fmt.Sprintf("cert init: --node must be 1 to 63 characters of a-z, 0-9 and '-' (as node.name), got %q", o.Node)}
	case o.Peer != "" && !peerNameRE.MatchString(o.Peer):
		return &usageError{fmt.Sprintf("cert init: --peer must be 1 to 63 characters of a-z, 0-9 and '-' (as peer.name), got %q", o.Peer)}
	case o.Peer == o.Node:
		return &usageError{fmt.Sprintf("cert init: --peer %q is --node itself; --peer is the other node's name", o.Peer)}
	case o.Days < 1 || o.Days > certMaxDays:
		return &usageError{fmt.Sprintf("cert init: --days must be between 1 and %d, got %d", certMaxDays, o.Days)}
	case o.Dir == "":
		return &usageError{"cert init: --dir must not be empty"}
	}
	return nil
}

// runCertInit writes the key and certificate of opts.Node and prints what to
// do with them.
func runCertInit(_ context.Context, out io.Writer, opts certInitOptions) error {
	if err := opts.check(); err != nil {
		return err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	// The configuration wants absolute paths; print what it will accept.
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return fmt.Errorf("cert init: --dir %s: %w", opts.Dir, err)
	}
	keyPath := filepath.Join(dir, opts.Node+".key")
	certPath := filepath.Join(dir, opts.Node+".crt")

	certPEM, keyPEM, err := transport.GenerateCert(opts.Node, time.Duration(opts.Days)*24*time.Hour, now)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return errors.New("cert init: generated certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("cert init: generated certificate: %w", err)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cert init: %w", err)
	}
	files := []certFile{{keyPath, keyPEM, 0o600}, {certPath, certPEM, 0o644}}
	if opts.Force {
		err = certReplaceFiles(dir, files)
	} else {
		err = certCreateFiles(files)
	}
	if err != nil {
		return err
	}
	return printCertInit(out, opts, dir, keyPath, certPath, cert)
}

type certFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// certCreateFiles creates every file with O_EXCL, or none: an existing file
// (or symlink) is never written through, and files created before a failure
// are removed again.
func certCreateFiles(files []certFile) error {
	var exist []string
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			exist = append(exist, f.path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cert init: %w", err)
		}
	}
	if len(exist) > 0 {
		return &certExistsError{exist}
	}
	var created []string
	for _, f := range files {
		err := certCreate(f)
		if err != nil {
			for _, p := range created {
				os.Remove(p)
			}
			if errors.Is(err, fs.ErrExist) { // appeared since the check
				return &certExistsError{[]string{f.path}}
			}
			return fmt.Errorf("cert init: %w", err)
		}
		created = append(created, f.path)
	}
	return nil
}

func certCreate(f certFile) error {
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if err != nil {
		return err
	}
	err = certFill(fh, f)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.path)
	}
	return err
}

// certFill sets the exact mode (the umask may have taken bits off), writes
// and syncs.
func certFill(fh *os.File, f certFile) error {
	if err := fh.Chmod(f.mode); err != nil {
		return err
	}
	if _, err := fh.Write(f.data); err != nil {
		return err
	}
	return fh.Sync()
}

// certReplaceFiles (--force) writes each file to a temporary file in dir and
// renames it into place, so a replaced key gets mode 0600 whatever the old
// file's mode was, and a reader never sees half a file. All temporary files
// are written before the first rename.
func certReplaceFiles(dir string, files []certFile) error {
	tmps := make([]string, 0, len(files))
	cleanup := func() {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	for _, f := range files {
		fh, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*")
		if err != nil {
			cleanup()
			return fmt.Errorf("cert init: %w", err)
		}
		tmps = append(tmps, fh.Name())
		err = certFill(fh, f)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cleanup()
			return fmt.Errorf("cert init: %s: %w", f.path, err)
		}
	}
	for i, f := range files {
		if err := os.Rename(tmps[i], f.path); err != nil {
			cleanup()
			return fmt.Errorf("cert init: %w", err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the renames survive a crash; best effort
		d.Close()
	}
	return nil
}

// yamlPlainRE: an absolute path that YAML reads as the same plain string;
// anything else is printed double-quoted.
var yamlPlainRE = regexp.MustCompile(`^/[A-Za-z0-9/_.<>+@-]*$`)

func yamlString(s string) string {
	if yamlPlainRE.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

func printCertInit(out io.Writer, opts certInitOptions, dir, keyPath, certPath string, cert *x509.Certificate) error {
	peer := opts.Peer
	if peer == "" {
		peer = certPeerPlaceholder
	}
	peerCertPath := filepath.Join(dir, peer+".crt")
	var b strings.Builder
	fmt.Fprintf(&b, "Wrote the TLS key and certificate of node %s:\n", opts.Node)
	fmt.Fprintf(&b, "  %s  private key, mode 0600: it never leaves this node\n", keyPath)
	fmt.Fprintf(&b, "  %s  certificate, mode 0644, valid until %s\n\n", certPath, cert.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(&b, "Certificate fingerprint (SHA-256):\n  %s\n\n", transport.Fingerprint(cert))
	fmt.Fprintf(&b, "Next steps:\n")
	fmt.Fprintf(&b, "  1. copy %s to the peer as its transport.tls.peer_cert\n", certPath)
	fmt.Fprintf(&b, "     (e.g. to the same path there) and check its fingerprint on the peer with\n")
	fmt.Fprintf(&b, "       openssl x509 -in %s -outform DER | sha256sum\n", certPath)
	if opts.Force {
		fmt.Fprintf(&b, "     The peer pins the certificate it has, so it refuses this node until it gets this one.\n")
	}
	fmt.Fprintf(&b, "  2. on the peer, run 'zrepl-ha cert init --node %s --peer %s' and copy its\n", peer, opts.Node)
	fmt.Fprintf(&b, "     certificate here as %s\n", peerCertPath)
	fmt.Fprintf(&b, "  3. put this in the configuration of %s:\n\n", opts.Node)
	fmt.Fprintf(&b, "transport:\n  tls:\n")
	fmt.Fprintf(&b, "    cert: %s\n", yamlString(certPath))
	fmt.Fprintf(&b, "    key: %s\n", yamlString(keyPath))
	fmt.Fprintf(&b, "    peer_cert: %s\n", yamlString(peerCertPath))
	if opts.Peer == "" {
		fmt.Fprintf(&b, "\nReplace %s with the peer's node name (peer.name in this configuration).\n", certPeerPlaceholder)
	}
	_, err := io.WriteString(out, b.String())
	return err
}
