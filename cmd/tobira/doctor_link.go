package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tobira-ac/tobira/firmware"
	"github.com/tobira-ac/tobira/internal/mqttconn"
	"github.com/tobira-ac/tobira/internal/signed"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/sync/proto"
)

// expiryWarning is how long before a certificate expires the doctor warns:
// a month leaves time to have a new one issued and installed.
const expiryWarning = 30 * 24 * time.Hour

// retainedWait is how long the ACL check waits for the retained status
// after subscribing: mosquitto sends it right after the SUBACK.
const retainedWait = 500 * time.Millisecond

// certValidity judges c at now: a failure when it is expired or not yet
// valid, a warning when it expires within expiryWarning. what names the
// certificate and renew how to replace it.
func (d *doctor) certValidity(check, what, renew string, c *x509.Certificate) bool {
	now := d.env.Clock.Now()
	left := c.NotAfter.Sub(now)
	switch {
	case now.After(c.NotAfter):
		return d.fail(check, renew, "%s expired on %s", what, c.NotAfter.Format(time.DateOnly))
	case now.Before(c.NotBefore):
		return d.fail(check, "check the clock (timedatectl), or "+renew, "%s is not valid before %s", what, c.NotBefore.Format(time.DateTime))
	case left < expiryWarning:
		d.warn(check, renew, "%s expires in %s, on %s", what, days(left), c.NotAfter.Format(time.DateOnly))
	default:
		d.ok(check, "%s valid for %s more (until %s)", what, days(left), c.NotAfter.Format(time.DateOnly))
	}
	return true
}

// certName names c by its Common Name, or its whole subject without one.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

// days writes d in whole days (or hours under two days).
func days(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// checkBroker: the TLS material is valid and chains, the broker accepts the
// device's identity, and its ACL lets the device publish its status.
func (d *doctor) checkBroker(ctx context.Context) bool {
	if !d.checkTLSFiles() {
		return false
	}
	tlsCfg, err := hqTLS(d.cfg.HQ)
	if err != nil {
		return d.fail("tls", "install the files named in [hq], or correct those keys", "%v", err)
	}
	if tlsCfg != nil {
		tlsCfg.Time = d.env.Clock.Now
	}
	password := ""
	if d.cfg.HQ.PasswordFile != "" {
		b, err := os.ReadFile(d.cfg.HQ.PasswordFile)
		if err != nil {
			return d.fail("broker", "make hq.password_file readable by the tobira user", "hq.password_file: %v", err)
		}
		password = strings.TrimSpace(string(b))
	}
	urls := d.cfg.HQ.BrokerURLs()
	brokers := strings.Join(urls, ", ")
	settings := mqttconn.Settings{Broker: urls[0], Fallbacks: urls[1:], ClientID: d.cfg.Site + "/" + d.cfg.Device + "/doctor",
		TLS: tlsCfg, Username: d.cfg.HQ.Username, Password: password}
	opts := settings.Options().SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true)
	if dl, ok := ctx.Deadline(); ok {
		opts.SetConnectTimeout(time.Until(dl))
	}
	c := mqtt.NewClient(opts)
	if err := waitToken(ctx, c.Connect()); err != nil {
		fix, what := connectFailure(err)
		return d.fail("broker", fix, "%s %s: %v", what, brokers, err)
	}
	defer c.Disconnect(mqttconn.DisconnectQuiesce)
	d.ok("broker", "connected to %s as the device", brokers)
	return d.checkACL(ctx, c)
}

// connectFailure explains a failed connection: its fix and what it means.
func connectFailure(err error) (fix, what string) {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var alert tls.AlertError
	var opErr *net.OpError
	switch {
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host):
		return "set hq.ca_cert to the CA that signed the broker's certificate, and hq.broker to a host name that certificate names",
			"the broker's certificate is not accepted with hq.ca_cert at"
	case errors.As(err, &alert), strings.Contains(err.Error(), "remote error: tls"):
		return "have the device CA issue a current certificate for this device (hq.client_cert, hq.client_key); the broker's cafile must be that CA",
			"the broker refused this device's certificate at"
	case errors.Is(err, mqtt.ErrNotConnected), strings.Contains(err.Error(), "not Authorized"), strings.Contains(err.Error(), "user name or password"):
		return "check hq.username and hq.password_file, and that the broker knows this device; the shipped broker config " +
				"accepts a device only with a certificate for CN \"{site}/{device}\" (it binds the client ID to it)",
			"the broker refused the login at"
	case errors.As(err, &opErr), errors.Is(err, context.DeadlineExceeded):
		return "check hq.broker (host and port), the network and the firewall, and that the broker runs (systemctl status mosquitto on the broker)",
			"broker unreachable:"
	}
	return "check hq.broker and the [hq] TLS files", "cannot connect to"
}

// checkTLSFiles: hq.ca_cert holds valid CA certificates, and the device's
// certificate is valid, matches its key, chains to hq.ca_cert and names the
// device as the shipped ACL expects.
func (d *doctor) checkTLSFiles() bool {
	h := d.cfg.HQ
	if h.CACert == "" {
		d.warn("tls", "use an ssl:// broker with hq.ca_cert, hq.client_cert and hq.client_key (deploy/mosquitto)",
			"%s is not TLS: the link is neither encrypted nor authenticated", strings.Join(h.BrokerURLs(), ", "))
		return true
	}
	pem, err := os.ReadFile(h.CACert)
	if err != nil {
		return d.fail("tls", "install the CA certificate or correct hq.ca_cert", "hq.ca_cert: %v", err)
	}
	cas, err := reader.LoadTrustAnchors(h.CACert)
	if err != nil || len(cas) == 0 {
		return d.fail("tls", "hq.ca_cert must be the PEM certificate of the CA that signed the broker's certificate", "hq.ca_cert: %s holds no certificate: %v", h.CACert, err)
	}
	good := true
	for _, ca := range cas {
		good = d.certValidity("tls", fmt.Sprintf("hq.ca_cert %q", certName(ca)), "install the broker CA's new certificate as hq.ca_cert", ca) && good
	}
	if h.ClientCert == "" {
		return good
	}
	pair, err := tls.LoadX509KeyPair(h.ClientCert, h.ClientKey)
	if err != nil {
		return d.fail("tls", "hq.client_cert and hq.client_key must be this device's PEM certificate and its key", "hq.client_cert/client_key: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return d.fail("tls", "hq.client_cert must be a PEM certificate", "hq.client_cert: %v", err)
	}
	renew := "have the device CA issue a new certificate for " + d.cfg.Site + "/" + d.cfg.Device + " and install it as hq.client_cert and hq.client_key"
	if !d.certValidity("tls", fmt.Sprintf("hq.client_cert %q", certName(leaf)), renew, leaf) {
		return false
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	inter := x509.NewCertPool()
	for _, c := range pair.Certificate[1:] {
		if ic, err := x509.ParseCertificate(c); err == nil {
			inter.AddCert(ic)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: d.env.Clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return d.fail("tls", "install the certificate the device CA issued for this device, or set hq.ca_cert to the device CA (deploy/mosquitto uses one CA for both)",
			"hq.client_cert does not chain to hq.ca_cert: %v", err)
	}
	if want := d.cfg.Site + "/" + d.cfg.Device; leaf.Subject.CommonName != want {
		d.warn("tls", fmt.Sprintf("with the shipped ACL the certificate's CN is the MQTT user: issue it for CN %q", want),
			"hq.client_cert is for CN %q, not %q", leaf.Subject.CommonName, want)
	}
	return good
}

// checkACL publishes a real status on the device's own status topic, not
// retained, and waits to read it back: mosquitto drops a denied publish
// silently, so only the echo proves the ACL lets the device publish. The
// payload is the retained status the broker already holds for the device
// (HQ sees nothing new), or, without one, the offline status a stopped
// controller publishes. The retained message is never replaced.
func (d *doctor) checkACL(ctx context.Context, c mqtt.Client) bool {
	topic := proto.StatusTopic(d.cfg.Site, d.cfg.Device)
	aclFix := fmt.Sprintf("the broker's ACL must let user %q write and read %s: install deploy/mosquitto/acl, and issue the device certificate for CN %q",
		d.brokerUser(), topic, d.cfg.Site+"/"+d.cfg.Device)
	msgs := make(chan mqtt.Message, 16)
	tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case msgs <- m:
		default:
		}
	})
	if err := waitToken(ctx, tok); err != nil {
		return d.fail("acl", aclFix, "subscribe to %s: %v", topic, err)
	}
	if q := tok.(*mqtt.SubscribeToken).Result()[topic]; q == 0x80 {
		return d.fail("acl", aclFix, "the broker refused the subscription to %s", topic)
	}
	payload := proto.OfflineStatus(d.cfg.Site, d.cfg.Device)
	wait := d.env.Clock.NewTimer(retainedWait)
	select {
	case m := <-msgs:
		if m.Retained() {
			payload = m.Payload()
		}
	case <-wait.C():
	case <-ctx.Done():
	}
	wait.Stop()
	if err := waitToken(ctx, c.Publish(topic, 1, false, payload)); err != nil {
		return d.fail("acl", aclFix, "publish on %s: %v", topic, err)
	}
	for {
		select {
		case m := <-msgs:
			if !m.Retained() && string(m.Payload()) == string(payload) {
				d.ok("acl", "the broker accepted a status on %s (%s)", topic, describeStatus(payload))
				return true
			}
		case <-ctx.Done():
			return d.fail("acl", aclFix, "a status published on %s never came back: the broker's ACL dropped it", topic)
		}
	}
}

// brokerUser is the MQTT user the broker sees: hq.username, else (with the
// shipped configuration) the client certificate's CN.
func (d *doctor) brokerUser() string {
	if d.cfg.HQ.Username != "" {
		return d.cfg.HQ.Username
	}
	if pair, err := tls.LoadX509KeyPair(d.cfg.HQ.ClientCert, d.cfg.HQ.ClientKey); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
			return leaf.Subject.CommonName
		}
	}
	return d.cfg.Site + "/" + d.cfg.Device
}

// describeStatus says which status was sent.
func describeStatus(payload []byte) string {
	var st proto.Status
	if json.Unmarshal(payload, &st) == nil && st.Online {
		return "the retained online status, again"
	}
	return "an offline status, as a stopped controller sends"
}

// waitToken waits for tok until ctx ends.
func waitToken(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return fmt.Errorf("no answer from the broker: %w", ctx.Err())
	}
}

// checkKeys: the pinned HQ keys and release keys are readable Ed25519 keys,
// and every JPKI trust anchor is a certificate valid for a while yet.
func (d *doctor) checkKeys(context.Context) bool {
	good := true
	keyFix := "install the PEM public key that `tobira-hq keygen` (or tobira-release keygen) wrote, or correct %s"
	for i, p := range d.cfg.HQ.Keys {
		key := fmt.Sprintf("hq.keys[%d]", i)
		k, err := signed.ReadPublicKey(p)
		if err != nil {
			good = d.fail("hq.keys", fmt.Sprintf(keyFix, key), "%s: %v", key, err)
			continue
		}
		d.ok("hq.keys", "%s %s: HQ key %s (Ed25519 keys do not expire; rotate by pinning the next one too)", key, p, signed.KeyID(k))
	}
	if len(d.cfg.HQ.Keys) == 0 {
		d.warn("hq.keys", "pin HQ's public key: hq.keys = [\"/etc/tobira/hq.pub\"]",
			"no hq.keys: snapshots, commands and ticket marks from HQ will be refused")
	}
	for i, p := range d.cfg.Firmware.ReleaseKeys {
		key := fmt.Sprintf("firmware.release_keys[%d]", i)
		if _, err := firmware.ReadPublicKey(p); err != nil {
			good = d.fail("hq.keys", fmt.Sprintf(keyFix, key), "%s: %v", key, err)
		}
	}
	for i, p := range d.cfg.Trust.Anchors {
		key := fmt.Sprintf("trust.anchors[%d]", i)
		certs, err := reader.LoadTrustAnchors(p)
		if err != nil {
			good = d.fail("trust", fmt.Sprintf("install the JPKI CA certificate (PEM or DER) or correct %s", key), "%s: %v", key, err)
			continue
		}
		for _, c := range certs {
			good = d.certValidity("trust", fmt.Sprintf("%s %q", key, certName(c)),
				fmt.Sprintf("add the JPKI CA's next generation to trust.anchors and drop the expired one (%s)", p), c) && good
		}
	}
	return good
}
