package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/zrepl-ha/zrepl-ha/internal/config"
	"github.com/zrepl-ha/zrepl-ha/transport"
)

func certInit(t *testing.T, opts certInitOptions) (string, error) {
	t.Helper()
	if opts.Days == 0 {
		opts.Days = certDefaultDays
	}
	var out bytes.Buffer
	err := runCertInit(context.Background(), &out, opts)
	return out.String(), err
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", path, got, want)
	}
}

// certSnippet parses the YAML printed after "configuration of NODE:".
func certSnippet(t *testing.T, out string) config.TLS {
	t.Helper()
	i := strings.Index(out, "\ntransport:\n")
	if i < 0 {
		t.Fatalf("no YAML in:\n%s", out)
	}
	snippet := out[i+1:]
	if j := strings.Index(snippet, "\n\n"); j >= 0 {
		snippet = snippet[:j+1]
	}
	var doc struct {
		Transport struct {
			TLS config.TLS `yaml:"tls"`
		} `yaml:"transport"`
	}
	dec := yaml.NewDecoder(strings.NewReader(snippet))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("printed YAML does not parse: %v\n%s", err, snippet)
	}
	return doc.Transport.TLS
}

func certFingerprintOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return transport.Fingerprint(c)
}

func TestRunCertInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "zrepl-ha") // does not exist yet
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	outA, err := certInit(t, certInitOptions{Node: "alpha", Dir: dir, Days: 30, Peer: "beta", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	outB, err := certInit(t, certInitOptions{Node: "beta", Dir: dir, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	alphaCrt, alphaKey := filepath.Join(dir, "alpha.crt"), filepath.Join(dir, "alpha.key")
	betaCrt, betaKey := filepath.Join(dir, "beta.crt"), filepath.Join(dir, "beta.key")
	checkMode(t, dir, 0o700)
	for _, p := range []string{alphaCrt, betaCrt} {
		checkMode(t, p, 0o644)
	}
	for _, p := range []string{alphaKey, betaKey} {
		checkMode(t, p, 0o600)
	}

	// The pair works as the daemon will load it.
	a, err := transport.LoadTLS(alphaCrt, alphaKey, betaCrt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transport.LoadTLS(betaCrt, betaKey, alphaCrt); err != nil {
		t.Fatal(err)
	}
	if a.Cert.Subject.CommonName != "alpha" || a.PeerCert.Subject.CommonName != "beta" {
		t.Errorf("CNs %q %q", a.Cert.Subject.CommonName, a.PeerCert.Subject.CommonName)
	}
	if want := time.Now().Add(30 * 24 * time.Hour); a.Cert.NotAfter.Sub(want).Abs() > time.Minute {
		t.Errorf("--days 30: NotAfter %s", a.Cert.NotAfter)
	}
	if want := now.Add(certDefaultDays * 24 * time.Hour); !a.PeerCert.NotAfter.Equal(want) {
		t.Errorf("default days: NotAfter %s, want %s", a.PeerCert.NotAfter, want)
	}

	// What it prints: fingerprint, what to copy, this node's YAML.
	for _, want := range []string{
		a.Fingerprint(),
		"copy " + alphaCrt + " to the peer as its transport.tls.peer_cert",
		"zrepl-ha cert init --node beta --peer alpha",
	} {
		if !strings.Contains(outA, want) {
			t.Errorf("output lacks %q:\n%s", want, outA)
		}
	}
	if got := certSnippet(t, outA); got != (config.TLS{Cert: alphaCrt, Key: alphaKey, PeerCert: betaCrt}) {
		t.Errorf("alpha's YAML: %+v", got)
	}
	if strings.Contains(outA, certPeerPlaceholder) {
		t.Errorf("placeholder printed although --peer was given:\n%s", outA)
	}
	// Without --peer, a placeholder and a note on it.
	if got := certSnippet(t, outB); got.PeerCert != filepath.Join(dir, "<peer>.crt") || got.Cert != betaCrt || got.Key != betaKey {
		t.Errorf("beta's YAML: %+v", got)
	}
	if !strings.Contains(outB, "Replace <peer> with the peer's node name") || !strings.Contains(outB, certFingerprintOf(t, betaCrt)) {
		t.Errorf("output:\n%s", outB)
	}
	t.Logf("alpha's output:\n%s", outA)
}

func TestRunCertInitRelativeDir(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	out, err := certInit(t, certInitOptions{Node: "alpha", Dir: "certs"})
	if err != nil {
		t.Fatal(err)
	}
	// The configuration wants absolute paths; the YAML has them.
	got := certSnippet(t, out)
	if !filepath.IsAbs(got.Cert) || got.Cert != filepath.Join(base, "certs", "alpha.crt") {
		t.Errorf("cert %q", got.Cert)
	}
}

func TestRunCertInitQuotesOddPaths(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my certs: #1")
	out, err := certInit(t, certInitOptions{Node: "alpha", Dir: dir, Peer: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	if got := certSnippet(t, out); got.Key != filepath.Join(dir, "alpha.key") || got.PeerCert != filepath.Join(dir, "beta.crt") {
		t.Errorf("YAML: %+v", got)
	}
}

func TestRunCertInitRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, err := certInit(t, certInitOptions{Node: "alpha", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "alpha.crt"), filepath.Join(dir, "alpha.key")
	before := map[string]string{crt: mustReadString(t, crt), key: mustReadString(t, key)}

	out, err := certInit(t, certInitOptions{Node: "alpha", Dir: dir})
	if !errors.Is(err, fs.ErrExist) || exitCode(err) != exitFailure || out != "" {
		t.Fatalf("second init: %v (code %d), output %q", err, exitCode(err), out)
	}
	for _, want := range []string{crt, key, "--force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for p, data := range before {
		if mustReadString(t, p) != data {
			t.Errorf("%s was changed", p)
		}
	}

	// Only the key left over (say, the certificate was moved away): still
	// refused, and no lone certificate is written next to the old key.
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	_, err = certInit(t, certInitOptions{Node: "alpha", Dir: dir})
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), key) || strings.Contains(err.Error(), crt) {
		t.Fatalf("key only: %v", err)
	}
	if _, err := os.Lstat(crt); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("certificate written: %v", err)
	}

	// A symlink where the key goes is not written through.
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "beta.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := certInit(t, certInitOptions{Node: "beta", Dir: dir}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("symlink: %v", err)
	}
	if mustReadString(t, victim) != "keep" {
		t.Fatal("wrote through a symlink")
	}
}

func TestRunCertInitForce(t *testing.T) {
	dir := t.TempDir()
	if _, err := certInit(t, certInitOptions{Node: "alpha", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := certInit(t, certInitOptions{Node: "beta", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "alpha.crt"), filepath.Join(dir, "alpha.key")
	oldFP := certFingerprintOf(t, crt)
	// Someone loosened the old key's mode; the new key is 0600 anyway.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := certInit(t, certInitOptions{Node: "alpha", Dir: dir, Force: true, Peer: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	newFP := certFingerprintOf(t, crt)
	if newFP == oldFP || !strings.Contains(out, newFP) {
		t.Fatalf("certificate not replaced (old %s, new %s)", oldFP, newFP)
	}
	if !strings.Contains(out, "refuses this node until it gets this one") {
		t.Errorf("no warning that the peer must get the new certificate:\n%s", out)
	}
	checkMode(t, key, 0o600)
	checkMode(t, crt, 0o644)
	if _, err := transport.LoadTLS(crt, key, filepath.Join(dir, "beta.crt")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("left behind: %v", names)
	}
	// --force also works when nothing exists yet.
	if _, err := certInit(t, certInitOptions{Node: "gamma", Dir: dir, Force: true}); err != nil {
		t.Fatal(err)
	}
	checkMode(t, filepath.Join(dir, "gamma.key"), 0o600)
}

func TestRunCertInitBadOptions(t *testing.T) {
	cases := []struct {
		name string
		opts certInitOptions
		want string
	}{
		{"no node", certInitOptions{}, "--node NAME is required"},
		{"upper case", certInitOptions{Node: "Alpha"}, "--node must be"},
		{"underscore", certInitOptions{Node: "a_b"}, "--node must be"},
		{"path", certInitOptions{Node: "../alpha"}, "--node must be"},
		{"too long", certInitOptions{Node: strings.Repeat("a", 64)}, "--node must be"},
		{"bad peer", certInitOptions{Node: "alpha", Peer: "Beta"}, "--peer must be"},
		{"peer is node", certInitOptions{Node: "alpha", Peer: "alpha"}, "other node's name"},
		{"zero days", certInitOptions{Node: "alpha", Days: -1}, "--days"},
		{"too many days", certInitOptions{Node: "alpha", Days: certMaxDays + 1}, "--days"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			c.opts.Dir = dir
			_, err := certInit(t, c.opts)
			if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v (code %d), want exit 2 and %q", err, exitCode(err), c.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("created %s: %v", dir, err)
			}
		})
	}
	if _, err := certInit(t, certInitOptions{Node: "alpha"}); exitCode(err) != exitUsage {
		t.Fatalf("empty --dir: %v", err)
	}
}

// TestCertInitCommand runs the command line end to end.
func TestCertInitCommand(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runMain(t, "cert", "init", "--node", "alpha", "--dir", dir, "--days", "30", "--peer", "beta")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, certFingerprintOf(t, filepath.Join(dir, "alpha.crt"))) {
		t.Fatalf("stdout:\n%s", stdout)
	}
	code, _, stderr = runMain(t, "cert", "init", "--node", "alpha", "--dir", dir)
	if code != exitFailure || !strings.Contains(stderr, "refusing to overwrite") {
		t.Fatalf("second run: code %d stderr %q", code, stderr)
	}
	code, _, _ = runMain(t, "cert", "init", "--node", "alpha", "--dir", dir, "--force")
	if code != exitOK {
		t.Fatalf("--force: code %d", code)
	}

	usage := [][]string{
		{"cert", "init", "--node", "Bad_Name", "--dir", dir},
		{"cert", "init", "--dir", dir},
		{"cert", "init", "--node", "beta", "--dir", dir, "extra"},
		{"cert", "init", "--node", "beta", "--dir", dir, "--days", "many"},
		{"cert", "init", "--node", "beta", "--dir", dir, "--days", "0"},
		{"cert", "init", "--nope"},
		{"cert", "bogus"},
	}
	for _, args := range usage {
		code, stdout, stderr := runMain(t, args...)
		if code != exitUsage || stderr == "" {
			t.Errorf("%q: code %d stdout %q stderr %q", args, code, stdout, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "beta.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed run wrote beta.key: %v", err)
	}
}

func TestCertHelp(t *testing.T) {
	code, stdout, _ := runMain(t, "cert", "init", "--help")
	if code != exitOK || !regexp.MustCompile(`(?s)--node.*--dir.*--days.*--peer.*--force`).MatchString(stdout) {
		t.Fatalf("code %d help:\n%s", code, stdout)
	}
}

func mustReadString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
