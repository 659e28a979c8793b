package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tlsTestTimeout bounds every handshake, read and wait in these tests.
const tlsTestTimeout = 10 * time.Second

// tlsTestFiles are one node's PEM files on disk.
type tlsTestFiles struct {
	name, cert, key string
	leaf            *x509.Certificate
}

// tlsTestNode writes a key pair for name into dir, valid from now-1h to
// now+validFor.
func tlsTestNode(t *testing.T, dir, name string, validFor time.Duration, now time.Time) tlsTestFiles {
	t.Helper()
	certPEM, keyPEM, err := GenerateCert(name, validFor, now)
	if err != nil {
		t.Fatal(err)
	}
	n := tlsTestFiles{name: name, cert: filepath.Join(dir, name+".crt"), key: filepath.Join(dir, name+".key")}
	if err := os.WriteFile(n.cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	if n.leaf, err = x509.ParseCertificate(b.Bytes); err != nil {
		t.Fatal(err)
	}
	return n
}

// tlsTestTrio makes alpha and beta, which pin each other, and mallory, whom
// nobody pins.
func tlsTestTrio(t *testing.T) (alpha, beta, mallory tlsTestFiles) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	return tlsTestNode(t, dir, "alpha", 24*time.Hour, now),
		tlsTestNode(t, dir, "beta", 24*time.Hour, now),
		tlsTestNode(t, dir, "mallory", 24*time.Hour, now)
}

// tlsTestLoad loads self's files with peer's certificate pinned.
func tlsTestLoad(t *testing.T, self, peer tlsTestFiles) *TLSFiles {
	t.Helper()
	f, err := LoadTLS(self.cert, self.key, peer.cert)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type tlsTestSide struct {
	state tls.ConnectionState
	// err is the handshake error or, after a handshake that succeeded
	// locally, the error of the one-byte exchange that follows it (in TLS
	// 1.3 a client learns that the server refused its certificate only
	// when it next reads).
	err error
}

// tlsTestHandshake runs a real TLS handshake over 127.0.0.1 between a
// client and a server config, then echoes one byte from client to server and
// back, and reports what each side saw. Everything is bounded by
// tlsTestTimeout.
func tlsTestHandshake(t *testing.T, client, server *tls.Config) (cl, sv tlsTestSide) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), tlsTestTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	done := make(chan tlsTestSide, 1)
	go func() {
		var s tlsTestSide
		defer func() { done <- s }()
		raw, err := ln.Accept()
		if err != nil {
			s.err = err
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(deadline)
		tc := tls.Server(raw, server)
		if s.err = tc.HandshakeContext(ctx); s.err != nil {
			return
		}
		s.state = tc.ConnectionState()
		var b [1]byte
		if _, s.err = io.ReadFull(tc, b[:]); s.err != nil {
			return
		}
		_, s.err = tc.Write(b[:])
	}()

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(deadline)
	tc := tls.Client(raw, client)
	if cl.err = tc.HandshakeContext(ctx); cl.err == nil {
		cl.state = tc.ConnectionState()
		var b [1]byte
		if _, cl.err = tc.Write([]byte{'x'}); cl.err == nil {
			if _, cl.err = io.ReadFull(tc, b[:]); cl.err == nil && b[0] != 'x' {
				cl.err = errors.New("echo mismatch")
			}
		}
	}
	raw.Close() // a server still waiting for the client gives up now

	select {
	case sv = <-done:
	case <-time.After(tlsTestTimeout):
		t.Fatal("server side did not finish")
	}
	return cl, sv
}

func peerFingerprint(t *testing.T, s tls.ConnectionState) string {
	t.Helper()
	if len(s.PeerCertificates) == 0 {
		t.Fatal("no peer certificate")
	}
	return Fingerprint(s.PeerCertificates[0])
}

func TestTLSMutualPinning(t *testing.T) {
	alpha, beta, _ := tlsTestTrio(t)
	a, b := tlsTestLoad(t, alpha, beta), tlsTestLoad(t, beta, alpha)
	cl, sv := tlsTestHandshake(t, a.ClientConfig(), b.ServerConfig())
	if cl.err != nil || sv.err != nil {
		t.Fatalf("client: %v; server: %v", cl.err, sv.err)
	}
	if got := peerFingerprint(t, cl.state); got != b.Fingerprint() || got != a.PeerFingerprint() {
		t.Errorf("client sees %s, want beta's %s", got, b.Fingerprint())
	}
	if got := peerFingerprint(t, sv.state); got != a.Fingerprint() || got != b.PeerFingerprint() {
		t.Errorf("server sees %s, want alpha's %s", got, a.Fingerprint())
	}
	for _, s := range []tls.ConnectionState{cl.state, sv.state} {
		if s.Version != tls.VersionTLS13 || s.DidResume {
			t.Errorf("version %x, resumed %v", s.Version, s.DidResume)
		}
	}
}

func checkPinError(t *testing.T, err error, got, want string) {
	t.Helper()
	var pe *PinError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPeerNotPinned) {
		t.Fatalf("want *PinError wrapping ErrPeerNotPinned, got %T %v", err, err)
	}
	if pe.Got != got || pe.Want != want {
		t.Fatalf("PinError{Got: %s, Want: %s}, want {%s, %s}", pe.Got, pe.Want, got, want)
	}
	if msg := err.Error(); !strings.Contains(msg, got) || !strings.Contains(msg, want) {
		t.Fatalf("message does not name both fingerprints: %s", msg)
	}
}

func TestTLSServerRefusesWrongClient(t *testing.T) {
	alpha, beta, mallory := tlsTestTrio(t)
	// mallory has beta's certificate (it is public) but its own key.
	m := tlsTestLoad(t, mallory, beta)
	b := tlsTestLoad(t, beta, alpha)
	cl, sv := tlsTestHandshake(t, m.ClientConfig(), b.ServerConfig())
	checkPinError(t, sv.err, Fingerprint(mallory.leaf), Fingerprint(alpha.leaf))
	if cl.err == nil {
		t.Fatal("client was not told it was refused")
	}
	t.Logf("client sees: %v", cl.err)
}

func TestTLSClientRefusesWrongServer(t *testing.T) {
	alpha, beta, mallory := tlsTestTrio(t)
	a := tlsTestLoad(t, alpha, beta)
	m := tlsTestLoad(t, mallory, alpha) // mallory pretends to be beta
	cl, sv := tlsTestHandshake(t, a.ClientConfig(), m.ServerConfig())
	checkPinError(t, cl.err, Fingerprint(mallory.leaf), Fingerprint(beta.leaf))
	if sv.err == nil {
		t.Fatal("server saw no error")
	}
}

func TestTLSClientWithoutCertificate(t *testing.T) {
	alpha, beta, _ := tlsTestTrio(t)
	a, b := tlsTestLoad(t, alpha, beta), tlsTestLoad(t, beta, alpha)
	c := a.ClientConfig()
	c.Certificates = nil
	cl, sv := tlsTestHandshake(t, c, b.ServerConfig())
	if sv.err == nil || cl.err == nil {
		t.Fatalf("client without certificate accepted: client %v, server %v", cl.err, sv.err)
	}
	t.Logf("server: %v; client: %v", sv.err, cl.err)
}

func TestTLSRefusesTLS12(t *testing.T) {
	alpha, beta, _ := tlsTestTrio(t)
	a, b := tlsTestLoad(t, alpha, beta), tlsTestLoad(t, beta, alpha)
	c := a.ClientConfig()
	c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	cl, sv := tlsTestHandshake(t, c, b.ServerConfig())
	if cl.err == nil || sv.err == nil {
		t.Fatalf("TLS 1.2 accepted: client %v, server %v", cl.err, sv.err)
	}
}

func TestTLSConfigs(t *testing.T) {
	alpha, beta, _ := tlsTestTrio(t)
	a := tlsTestLoad(t, alpha, beta)
	s, c := a.ServerConfig(), a.ClientConfig()
	if s.ClientAuth != tls.RequireAnyClientCert || s.InsecureSkipVerify {
		t.Errorf("server: ClientAuth %v, InsecureSkipVerify %v", s.ClientAuth, s.InsecureSkipVerify)
	}
	if !c.InsecureSkipVerify {
		t.Error("client does standard chain verification, which fails for a self-signed certificate")
	}
	for _, cfg := range []*tls.Config{s, c} {
		if cfg.MinVersion != tls.VersionTLS13 || cfg.VerifyConnection == nil || len(cfg.Certificates) != 1 {
			t.Errorf("config %+v", cfg)
		}
	}
	if a.ServerConfig() == s || a.ClientConfig() == c {
		t.Error("configs are shared between calls")
	}
}

// TestTLSWithDialListen runs the pinned configs through the package's own
// Dial and Listen (and ListenOn, on a socket the test opened): alpha
// connects to beta, mallory is refused and never reaches Accept.
func TestTLSWithDialListen(t *testing.T) {
	for _, name := range []string{"Listen", "ListenOn"} {
		t.Run(name, func(t *testing.T) { testTLSWithDialListen(t, name == "ListenOn") })
	}
}

func testTLSWithDialListen(t *testing.T, on bool) {
	alpha, beta, mallory := tlsTestTrio(t)
	a, b := tlsTestLoad(t, alpha, beta), tlsTestLoad(t, beta, alpha)
	m := tlsTestLoad(t, mallory, beta)
	ctx, cancel := context.WithTimeout(context.Background(), tlsTestTimeout)
	defer cancel()

	var ln *Listener
	var err error
	if on {
		raw, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		defer func() {
			// Closing the Listener closed the socket it was given (the
			// deadline turns a socket left open into a failure, not a hang).
			raw.(*net.TCPListener).SetDeadline(time.Now().Add(time.Second))
			if _, err := raw.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("socket still open after Close: %v", err)
			}
		}()
		ln, err = ListenOn(raw, "beta", "alpha", Security{TLS: b.ServerConfig()}, nil)
	} else {
		ln, err = Listen("127.0.0.1:0", "beta", "alpha", Security{TLS: b.ServerConfig()}, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *Conn, 2)
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	_, err = Dial(ctx, ln.Addr().String(), "alpha", "beta", PurposeControl, Security{TLS: m.ClientConfig()}, nil)
	if err == nil {
		t.Fatal("mallory's certificate was accepted")
	}
	c, err := Dial(ctx, ln.Addr().String(), "alpha", "beta", PurposeControl, Security{TLS: a.ClientConfig()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case sc := <-accepted:
		if sc == nil {
			t.Fatal("listener stopped")
		}
		defer sc.Close()
		if sc.Peer != "alpha" {
			t.Fatalf("accepted %q", sc.Peer)
		}
		tc, ok := sc.Conn.(*tls.Conn)
		if !ok {
			t.Fatalf("accepted a %T", sc.Conn)
		}
		if got := peerFingerprint(t, tc.ConnectionState()); got != a.Fingerprint() {
			t.Fatalf("server sees %s, want %s", got, a.Fingerprint())
		}
	case <-ctx.Done():
		t.Fatal("nothing accepted")
	}
}

func TestLoadTLS(t *testing.T) {
	alpha, beta, _ := tlsTestTrio(t)
	f, err := LoadTLS(alpha.cert, alpha.key, beta.cert)
	if err != nil {
		t.Fatal(err)
	}
	if f.Fingerprint() != Fingerprint(alpha.leaf) || f.PeerFingerprint() != Fingerprint(beta.leaf) {
		t.Fatal("fingerprints")
	}
	if f.CertFile != alpha.cert || f.KeyFile != alpha.key || f.PeerCertFile != beta.cert {
		t.Fatalf("%+v", f)
	}
}

func TestLoadTLSErrors(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	alpha := tlsTestNode(t, dir, "alpha", 24*time.Hour, now)
	beta := tlsTestNode(t, dir, "beta", 24*time.Hour, now)
	expired := tlsTestNode(t, dir, "expired", 24*time.Hour, now.Add(-48*time.Hour))
	future := tlsTestNode(t, dir, "future", 24*time.Hour, now.Add(2*time.Hour))

	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("garbage.pem", "this is not PEM\n")
	empty := write("empty.pem", "")
	alphaCopy := write("alpha-copy.crt", mustRead(t, alpha.cert))
	bundle := write("bundle.crt", mustRead(t, alpha.cert)+mustRead(t, beta.cert))
	certAndKey := write("certkey.pem", mustRead(t, beta.cert)+mustRead(t, beta.key))
	badDER := write("bad-der.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})))
	badKey := write("bad.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})))
	// The same key as alpha in a second, different certificate.
	sameKey := write("same-key.crt", sameKeyCert(t, alpha))
	missing := filepath.Join(dir, "missing.crt")

	cases := []struct {
		name              string
		cert, key, peer   string
		wantKey, wantFile string
		wantMsg           string
		wantIs            error
	}{
		{"missing cert", missing, alpha.key, beta.cert, "transport.tls.cert", missing, "no such file", fs.ErrNotExist},
		{"missing key", alpha.cert, filepath.Join(dir, "missing.key"), beta.cert, "transport.tls.key", filepath.Join(dir, "missing.key"), "no such file", fs.ErrNotExist},
		{"missing peer", alpha.cert, alpha.key, missing, "transport.tls.peer_cert", missing, "no such file", fs.ErrNotExist},
		{"empty name", "", alpha.key, beta.cert, "transport.tls.cert", "", "no file given", nil},
		{"cert not PEM", notPEM, alpha.key, beta.cert, "transport.tls.cert", notPEM, "not a PEM file", nil},
		{"cert empty", empty, alpha.key, beta.cert, "transport.tls.cert", empty, "not a PEM file", nil},
		{"key not PEM", alpha.cert, notPEM, beta.cert, "transport.tls.key", notPEM, "not a PEM file", nil},
		{"peer not PEM", alpha.cert, alpha.key, notPEM, "transport.tls.peer_cert", notPEM, "not a PEM file", nil},
		{"key as cert", alpha.key, alpha.key, beta.cert, "transport.tls.cert", alpha.key, "exactly one CERTIFICATE", nil},
		{"cert as key", alpha.cert, alpha.cert, beta.cert, "transport.tls.key", alpha.cert, "exactly one private key", nil},
		{"bundle", alpha.cert, alpha.key, bundle, "transport.tls.peer_cert", bundle, "exactly one CERTIFICATE", nil},
		{"peer with key", alpha.cert, alpha.key, certAndKey, "transport.tls.peer_cert", certAndKey, "exactly one CERTIFICATE", nil},
		{"bad DER", badDER, alpha.key, beta.cert, "transport.tls.cert", badDER, "not a valid certificate", nil},
		{"bad key DER", alpha.cert, badKey, beta.cert, "transport.tls.key", badKey, "not a valid PRIVATE KEY", nil},
		{"key mismatch", alpha.cert, beta.key, beta.cert, "transport.tls.key", beta.key, "does not match the certificate " + alpha.cert, nil},
		{"expired own", expired.cert, expired.key, beta.cert, "transport.tls.cert", expired.cert, "expired on", nil},
		{"expired peer", alpha.cert, alpha.key, expired.cert, "transport.tls.peer_cert", expired.cert, "expired on", nil},
		{"not yet valid", future.cert, future.key, beta.cert, "transport.tls.cert", future.cert, "not valid before", nil},
		{"peer is own cert", alpha.cert, alpha.key, alphaCopy, "transport.tls.peer_cert", alphaCopy, "this node's own certificate", nil},
		{"peer has own key", alpha.cert, alpha.key, sameKey, "transport.tls.peer_cert", sameKey, "same public key", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := LoadTLS(c.cert, c.key, c.peer)
			if err == nil {
				t.Fatalf("loaded %+v", f)
			}
			var fe *TLSFileError
			if !errors.As(err, &fe) || fe.Key != c.wantKey || fe.File != c.wantFile {
				t.Fatalf("want *TLSFileError for %s %s, got %#v", c.wantKey, c.wantFile, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, strings.TrimSpace(c.wantKey+" "+c.wantFile)) || !strings.Contains(msg, c.wantMsg) {
				t.Fatalf("message %q does not name %s %q and %q", msg, c.wantKey, c.wantFile, c.wantMsg)
			}
			if c.wantIs != nil && !errors.Is(err, c.wantIs) {
				t.Fatalf("%v is not %v", err, c.wantIs)
			}
			t.Log(msg)
		})
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameKeyCert is a second self-signed certificate for n's key.
func sameKeyCert(t *testing.T, n tlsTestFiles) string {
	t.Helper()
	b, _ := pem.Decode([]byte(mustRead(t, n.key)))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*ecdsa.PrivateKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "other"},
		NotBefore:    n.leaf.NotBefore,
		NotAfter:     n.leaf.NotAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestGenerateCert(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 500, time.UTC)
	certPEM, keyPEM, err := GenerateCert("alpha", 10*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cb, rest := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("cert PEM %q", certPEM)
	}
	kb, rest := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" || len(rest) != 0 {
		t.Fatalf("key PEM type %v", kb)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() || !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatalf("key %T does not match the certificate or is not P-256", k)
	}
	if cert.Subject.CommonName != "alpha" || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "alpha" {
		t.Errorf("subject %v, DNS %v", cert.Subject, cert.DNSNames)
	}
	if cert.Issuer.String() != cert.Subject.String() || cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) != nil {
		t.Error("not self-signed")
	}
	if !cert.NotBefore.Equal(time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC)) ||
		!cert.NotAfter.Equal(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("validity %s .. %s", cert.NotBefore, cert.NotAfter)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %v", cert.KeyUsage)
	}
	if len(cert.ExtKeyUsage) != 2 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || cert.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ext key usage %v", cert.ExtKeyUsage)
	}
	if cert.IsCA || cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("IsCA %v serial %v", cert.IsCA, cert.SerialNumber)
	}
	// Serials are random: two certificates never share one.
	c2, _, err := GenerateCert("alpha", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := pem.Decode(c2)
	cert2, _ := x509.ParseCertificate(b2.Bytes)
	if cert2.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("same serial twice")
	}
}

func TestGenerateCertRejects(t *testing.T) {
	for _, node := range []string{"", "Alpha", "a_b", "a.b", strings.Repeat("a", 64)} {
		if _, _, err := GenerateCert(node, time.Hour, time.Now()); !errors.Is(err, ErrBadName) {
			t.Errorf("node %q: %v", node, err)
		}
	}
	for _, d := range []time.Duration{0, -time.Hour} {
		if _, _, err := GenerateCert("alpha", d, time.Now()); err == nil {
			t.Errorf("validity %s accepted", d)
		}
	}
}

func TestFingerprint(t *testing.T) {
	alpha, _, _ := tlsTestTrio(t)
	sum := sha256.Sum256(alpha.leaf.Raw)
	got := Fingerprint(alpha.leaf)
	if got != hex.EncodeToString(sum[:]) || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(got) {
		t.Fatalf("fingerprint %q", got)
	}
}

func TestPinErrorMessage(t *testing.T) {
	e := &PinError{Got: "aaaa", Want: "bbbb"}
	if !errors.Is(e, ErrPeerNotPinned) {
		t.Fatal("does not wrap ErrPeerNotPinned")
	}
	if msg := e.Error(); !strings.Contains(msg, "presented SHA-256 fingerprint aaaa, expected bbbb") {
		t.Fatalf("message %q", msg)
	}
	none := &PinError{Want: "bbbb"}
	if msg := none.Error(); !strings.Contains(msg, "no certificate") || !strings.Contains(msg, "bbbb") {
		t.Fatalf("message %q", msg)
	}
}

func TestListenOnRefusesNoSecurity(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := ListenOn(raw, "beta", "alpha", Security{}, nil); err == nil || !strings.Contains(err.Error(), "transport.tls") {
		t.Fatalf("ListenOn without TLS or plaintext: %v, want an error naming transport.tls", err)
	}
}
