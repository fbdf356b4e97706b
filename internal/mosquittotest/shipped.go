package mosquittotest

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/testenv"
)

// CA is a test certificate authority for a broker that authenticates its
// clients with TLS certificates, as the shipped configuration does.
type CA struct {
	// Cert is the self-signed CA certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key *ecdsa.PrivateKey
	// Pool holds Cert alone.
	Pool *x509.CertPool
}

// NewCA makes a self-signed P-256 CA named cn, valid from an hour ago for a
// year.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool}
}

// PEM returns the CA certificate as PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Leaf describes a certificate for CA.Issue.
type Leaf struct {
	// CN is the Common Name: a device's "{site}/{device}", "tobira-hq", or
	// "127.0.0.1" for the broker.
	CN string
	// Serial is the certificate's serial number.
	Serial int64
	// Server makes a server certificate for 127.0.0.1 instead of a client
	// one.
	Server bool
	// NotAfter ends the validity; zero means 90 days from now. The
	// validity starts a day before NotAfter, or an hour ago, whichever is
	// earlier.
	NotAfter time.Time
}

// Issue returns a certificate for l and its key, as PEM.
func (ca *CA) Issue(t testing.TB, l Leaf) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := l.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().AddDate(0, 0, 90)
	}
	notBefore := time.Now().Add(-time.Hour)
	if d := notAfter.Add(-24 * time.Hour); d.Before(notBefore) {
		notBefore = d
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(l.Serial), Subject: pkix.Name{CommonName: l.CN},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if l.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// shippedDir is deploy/mosquitto of this source tree.
func shippedDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("mosquittotest: cannot locate the source tree")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "mosquitto")
}

// StartShipped runs mosquitto with deploy/mosquitto's configuration, ACL
// and client-ID plugin (compiled from tobira_clientid.c), pointed at files
// in a temporary directory (ca's certificate, a server certificate for
// 127.0.0.1 issued by ca, the plugin) and at a loopback port. Its URL is
// ssl://127.0.0.1:PORT. A missing C compiler or mosquitto/OpenSSL headers
// skip the test, or fail it when CI is "true".
func StartShipped(t testing.TB, ca *CA) *Mosquitto {
	t.Helper()
	m, _ := StartShippedDir(t, ca)
	return m
}

// StartShippedDir is StartShipped that also returns the directory holding
// the broker's files, which is also its persistence_location (a test that
// restarts the broker finds the saved retained messages there).
func StartShippedDir(t testing.TB, ca *CA) (*Mosquitto, string) {
	t.Helper()
	src := shippedDir(t)
	conf, err := os.ReadFile(filepath.Join(src, "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	acl, err := os.ReadFile(filepath.Join(src, "acl"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := ca.Issue(t, Leaf{CN: "127.0.0.1", Serial: 2, Server: true})
	for name, b := range map[string][]byte{"ca.crt": ca.PEM(), "server.crt": crt, "server.key": key, "acl": acl} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	buildPlugin(t, src, dir)
	text := strings.ReplaceAll(string(conf), "/etc/mosquitto/tobira/", dir+"/")
	text = strings.ReplaceAll(text, "plugin "+pluginPath, "plugin "+filepath.Join(dir, pluginName))
	if !strings.Contains(text, "plugin "+filepath.Join(dir, pluginName)+"\n") {
		t.Fatalf("shipped mosquitto.conf does not load %s", pluginPath)
	}
	text = strings.ReplaceAll(text, "persistence_location /var/lib/mosquitto/", "persistence_location "+dir+"/")
	if !strings.Contains(text, "\nlistener 8883\n") {
		t.Fatal("shipped mosquitto.conf has no 'listener 8883' line")
	}
	return StartWith(t, Options{
		Scheme: "ssl",
		Config: func(port int) string {
			return strings.Replace(text, "\nlistener 8883\n", "\nlistener "+strconv.Itoa(port)+" 127.0.0.1\n", 1)
		},
	}), dir
}

// The client-ID plugin: its file name and where mosquitto.conf loads it.
const (
	pluginName = "tobira_clientid.so"
	pluginPath = "/usr/lib/tobira/" + pluginName
)

// buildPlugin compiles src/tobira_clientid.c into dir as the Makefile
// next to it does.
func buildPlugin(t testing.TB, src, dir string) {
	t.Helper()
	cc := cmp.Or(os.Getenv("CC"), "cc")
	out, err := exec.CommandContext(t.Context(), cc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
		"-o", filepath.Join(dir, pluginName), filepath.Join(src, "tobira_clientid.c"), "-lcrypto").CombinedOutput()
	if err != nil {
		testenv.Missing(t, "cannot build the mosquitto client-ID plugin (needs a C compiler, mosquitto-dev, libmosquitto-dev, libssl-dev): %v\n%s", err, out)
	}
}
