package transport

import (
	"bytes"
	"crypto"
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
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"time"
)

// Trust model: each node has its own key and a self-signed certificate, and
// the configuration of each node pins the other node's certificate
// (transport.tls.peer_cert). There is no CA, no chain and no host name to
// check: a peer is accepted if and only if the leaf certificate it presents
// is byte for byte the pinned one, compared by the SHA-256 of its DER. The
// TLS handshake proves that the peer holds the matching private key.

// ErrPeerNotPinned is wrapped by every *PinError: the peer presented a
// certificate other than the pinned transport.tls.peer_cert.
var ErrPeerNotPinned = errors.New("transport: peer certificate is not the pinned transport.tls.peer_cert")

// PinError is the handshake error for a peer whose certificate is not the
// pinned one. Got and Want are fingerprints as Fingerprint prints them; Got
// is empty when the peer presented no certificate at all.
type PinError struct {
	Got  string
	Want string
}

func (e *PinError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("%v: the peer presented no certificate, expected SHA-256 fingerprint %s", ErrPeerNotPinned, e.Want)
	}
	return fmt.Sprintf("%v: the peer presented SHA-256 fingerprint %s, expected %s", ErrPeerNotPinned, e.Got, e.Want)
}

// Unwrap makes errors.Is(err, ErrPeerNotPinned) true.
func (e *PinError) Unwrap() error { return ErrPeerNotPinned }

// Fingerprint is the SHA-256 of cert's DER encoding in lowercase hex without
// separators (64 characters): the form used in logs, errors and
// `zrepl-ha cert init`. It is what
//
//	openssl x509 -in alpha.crt -outform DER | sha256sum
//
// prints, so an admin can check a copied certificate on either node.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// TLSFileError is LoadTLS's error: which file, under which configuration
// key, and what is wrong with it. Err may wrap fs.ErrNotExist and the like.
type TLSFileError struct {
	Key  string // transport.tls.cert, transport.tls.key or transport.tls.peer_cert
	File string
	Err  error
}

func (e *TLSFileError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("transport: %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("transport: %s %s: %v", e.Key, e.File, e.Err)
}

func (e *TLSFileError) Unwrap() error { return e.Err }

// Configuration keys named in LoadTLS's errors.
const (
	tlsKeyCert     = "transport.tls.cert"
	tlsKeyKey      = "transport.tls.key"
	tlsKeyPeerCert = "transport.tls.peer_cert"
)

// TLSFiles is this node's key pair and the peer's pinned certificate, loaded
// and checked by LoadTLS. Make tls.Configs from it with ServerConfig (for
// Listen) and ClientConfig (for Dial).
type TLSFiles struct {
	CertFile, KeyFile, PeerCertFile string

	// Cert is this node's certificate, PeerCert the pinned certificate of
	// the peer. Read-only.
	Cert     *x509.Certificate
	PeerCert *x509.Certificate

	keyPair tls.Certificate
	peerSum [sha256.Size]byte
}

// Fingerprint is this node's certificate fingerprint.
func (f *TLSFiles) Fingerprint() string { return Fingerprint(f.Cert) }

// PeerFingerprint is the fingerprint of the pinned peer certificate.
func (f *TLSFiles) PeerFingerprint() string { return Fingerprint(f.PeerCert) }

// LoadTLS reads and checks this node's certificate and key and the peer's
// pinned certificate (PEM files). Every error is a *TLSFileError naming the
// configuration key and the file: missing or unreadable, not PEM, not
// exactly one certificate, a key that does not belong to the certificate,
// a certificate outside its validity period, or a peer certificate that is
// this node's own (or has this node's key).
//
// Validity is checked here, when the daemon starts, and not at every
// handshake: once loaded, a pinned certificate is trusted as is, so a
// running pair does not cut itself off at a certificate's expiry date.
func LoadTLS(certFile, keyFile, peerCertFile string) (*TLSFiles, error) {
	return loadTLS(certFile, keyFile, peerCertFile, time.Now())
}

func loadTLS(certFile, keyFile, peerCertFile string, now time.Time) (*TLSFiles, error) {
	cert, err := loadCertFile(tlsKeyCert, certFile, now)
	if err != nil {
		return nil, err
	}
	key, err := loadKeyFile(keyFile)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, &TLSFileError{Key: tlsKeyKey, File: keyFile, Err: fmt.Errorf(
			"private key does not match the certificate %s (%s); use the key written together with that certificate", certFile, tlsKeyCert)}
	}
	peer, err := loadCertFile(tlsKeyPeerCert, peerCertFile, now)
	if err != nil {
		return nil, err
	}
	switch {
	case bytes.Equal(peer.Raw, cert.Raw):
		return nil, &TLSFileError{Key: tlsKeyPeerCert, File: peerCertFile, Err: fmt.Errorf(
			"is this node's own certificate (%s %s, fingerprint %s); it must be the peer's certificate", tlsKeyCert, certFile, Fingerprint(cert))}
	case publicKeysEqual(peer.PublicKey, cert.PublicKey):
		return nil, &TLSFileError{Key: tlsKeyPeerCert, File: peerCertFile, Err: fmt.Errorf(
			"has the same public key as this node's certificate %s; each node needs its own key (zrepl-ha cert init on each node)", certFile)}
	}
	return &TLSFiles{
		CertFile: certFile, KeyFile: keyFile, PeerCertFile: peerCertFile,
		Cert: cert, PeerCert: peer,
		keyPair: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert},
		peerSum: sha256.Sum256(peer.Raw),
	}, nil
}

// readTLSFile reads a PEM file, with errors that do not repeat the path.
func readTLSFile(key, file string) ([]byte, error) {
	if file == "" {
		return nil, &TLSFileError{Key: key, Err: errors.New("no file given")}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &TLSFileError{Key: key, File: file, Err: fmt.Errorf("cannot read: %w", err)}
	}
	return data, nil
}

// pemBlocks decodes every PEM block of data; none at all is an error.
func pemBlocks(data []byte, want string) ([]*pem.Block, error) {
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("not a PEM file: no -----BEGIN %s----- block found", want)
	}
	return blocks, nil
}

func loadCertFile(key, file string, now time.Time) (*x509.Certificate, error) {
	data, err := readTLSFile(key, file)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return &TLSFileError{Key: key, File: file, Err: fmt.Errorf(format, args...)}
	}
	blocks, err := pemBlocks(data, "CERTIFICATE")
	if err != nil {
		return nil, fail("%v", err)
	}
	// Exactly one certificate: the pin is one certificate, and a private key
	// has no business in a file that is copied to the other node.
	if len(blocks) != 1 || blocks[0].Type != "CERTIFICATE" {
		types := make([]string, len(blocks))
		for i, b := range blocks {
			types[i] = b.Type
		}
		return nil, fail("must hold exactly one CERTIFICATE PEM block and nothing else, found %q", types)
	}
	cert, err := x509.ParseCertificate(blocks[0].Bytes)
	if err != nil {
		return nil, fail("not a valid certificate: %v", err)
	}
	switch {
	case now.After(cert.NotAfter):
		return nil, fail("certificate expired on %s (now %s); renew it with 'zrepl-ha cert init --force' on the node it belongs to and copy the new certificate to the other node",
			cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return nil, fail("certificate is not valid before %s (now %s); check the clocks of both nodes",
			cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

func loadKeyFile(file string) (crypto.Signer, error) {
	data, err := readTLSFile(tlsKeyKey, file)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return &TLSFileError{Key: tlsKeyKey, File: file, Err: fmt.Errorf(format, args...)}
	}
	blocks, err := pemBlocks(data, "PRIVATE KEY")
	if err != nil {
		return nil, fail("%v", err)
	}
	var keyBlocks []*pem.Block
	for _, b := range blocks {
		switch b.Type {
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			keyBlocks = append(keyBlocks, b)
		}
	}
	if len(keyBlocks) != 1 {
		return nil, fail("must hold exactly one private key PEM block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY), found %d", len(keyBlocks))
	}
	b := keyBlocks[0]
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fail("not a valid %s: %v", b.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fail("unsupported private key type %T", key)
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// ServerConfig is the tls.Config for accepting the peer (Listen): TLS 1.3
// only, a client certificate required, and that certificate must be the
// pinned one. Each call returns a new Config.
func (f *TLSFiles) ServerConfig() *tls.Config {
	c := f.baseConfig()
	// Any certificate is requested and then checked against the pin by
	// VerifyConnection; there is no CA to verify a chain against.
	c.ClientAuth = tls.RequireAnyClientCert
	return c
}

// ClientConfig is the tls.Config for connecting to the peer (Dial): TLS 1.3
// only, this node's certificate presented, and the server's certificate must
// be the pinned one. Each call returns a new Config.
func (f *TLSFiles) ClientConfig() *tls.Config {
	c := f.baseConfig()
	// InsecureSkipVerify only turns off the standard verification (CA chain
	// and host name), which cannot work for a self-signed certificate. It is
	// replaced, not dropped: VerifyConnection still runs on every handshake
	// and refuses any server certificate other than the pinned one.
	c.InsecureSkipVerify = true
	return c
}

func (f *TLSFiles) baseConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{f.keyPair},
		// VerifyConnection rather than VerifyPeerCertificate: it also runs
		// on resumed sessions. Tickets are off anyway, so every connection
		// proves possession of the pinned key with a full handshake.
		VerifyConnection:       f.verifyPin,
		SessionTicketsDisabled: true,
	}
}

// verifyPin accepts the connection only if the peer's leaf certificate is
// the pinned one. Only the leaf counts: any further certificates the peer
// sends are ignored.
func (f *TLSFiles) verifyPin(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return &PinError{Want: hex.EncodeToString(f.peerSum[:])}
	}
	leaf := cs.PeerCertificates[0]
	if sha256.Sum256(leaf.Raw) != f.peerSum {
		return &PinError{Got: Fingerprint(leaf), Want: hex.EncodeToString(f.peerSum[:])}
	}
	return nil
}

// GenerateCert makes a key and a self-signed certificate for node: ECDSA
// P-256, CN and DNS name node, a random 128-bit serial, valid from an hour
// before now (clocks differ) until now+validFor, for digital signatures in
// TLS server and client authentication. The key is PKCS #8 ("PRIVATE KEY").
func GenerateCert(node string, validFor time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if err := checkNodeName("certificate node", node); err != nil {
		return nil, nil, err
	}
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("transport: certificate validity must be positive, got %s", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("transport: generate serial: %w", err)
	}
	if serial.Sign() == 0 { // serials must be positive; 2^-128 odds
		serial.SetInt64(1)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: node},
		DNSNames:              []string{node},
		NotBefore:             now.Add(-time.Hour).UTC().Truncate(time.Second),
		NotAfter:              now.Add(validFor).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
