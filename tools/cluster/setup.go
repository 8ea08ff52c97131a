package main

// What the harness needs around the components: certificates for a fresh control plane,
// files from the linked Istio module, and istiod's validating webhooks.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"istio.io/istio/manifests"
)

// certs writes, into dir, a CA (ca.crt, ca.key), one serving certificate signed by it per
// NAME=SAN[,SAN...] argument (NAME.crt, NAME.key; SANs that parse as IPs are IP SANs), and a
// service-account signing key pair (sa.key, sa.pub) for kube-apiserver.
func certs(args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: cluster certs DIR [NAME=SAN,SAN...]...")
		return 2
	}
	dir := args[0]
	if err := writeCerts(dir, args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "cluster certs: %v\n", err)
		return 1
	}
	return 0
}

func writeCerts(dir string, specs []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sticky-canary test cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(dir, "ca.crt", "CERTIFICATE", caDER); err != nil {
		return err
	}
	if err := writeKey(dir, "ca.key", caKey); err != nil {
		return err
	}
	for i, spec := range specs {
		name, sans, ok := strings.Cut(spec, "=")
		if !ok || name == "" || sans == "" {
			return fmt.Errorf("%q: want NAME=SAN[,SAN...]", spec)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		template := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(7 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		for _, san := range strings.Split(sans, ",") {
			if ip := net.ParseIP(san); ip != nil {
				template.IPAddresses = append(template.IPAddresses, ip)
			} else {
				template.DNSNames = append(template.DNSNames, san)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(dir, name+".crt", "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writeKey(dir, name+".key", key); err != nil {
			return err
		}
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writePEM(dir, "sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return err
	}
	return writePEM(dir, "sa.pub", "PUBLIC KEY", pub)
}

func writeKey(dir, name string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(dir, name, "EC PRIVATE KEY", der)
}

func writePEM(dir, name, kind string, der []byte) error {
	return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// istioFile prints a file of the linked Istio module's manifests (istio.io/istio/manifests
// embeds its charts), e.g. charts/base/files/crd-all.gen.yaml: the CRDs that Istio's base
// chart installs, from the same build as the istiod that runs.
func istioFile(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: cluster istio-file PATH (inside istio.io/istio/manifests, e.g. charts/base/files/crd-all.gen.yaml)")
		return 2
	}
	data, err := fs.ReadFile(manifests.FS, args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster istio-file: %v\n", err)
		return 1
	}
	os.Stdout.Write(data)
	return 0
}

// webhooks prints istiod's two ValidatingWebhookConfigurations for REVISION as Istio's charts
// render them with base.validationURL=URL and base.validationCABundle=the CA in CA_FILE
// (charts/istio-control/istio-discovery/templates/validatingwebhookconfiguration.yaml and
// charts/base/templates/defaultrevision-validatingwebhookconfiguration.yaml, with
// defaultRevision=REVISION): the per-revision webhook for objects labelled istio.io/rev=REVISION,
// and istiod-default-validator for every other Istio object. With a CA bundle given the charts
// set failurePolicy Fail and istiod's webhook controller leaves them alone. The URL replaces
// the chart's `service:` reference because the test's API server has no cluster DNS.
func webhooks(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cluster webhooks REVISION URL CA_FILE")
		return 2
	}
	revision, url, caFile := args[0], args[1], args[2]
	ca, err := os.ReadFile(caFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster webhooks: %v\n", err)
		return 1
	}
	bundle := base64.StdEncoding.EncodeToString(ca)
	hook := func(name, webhook, selector string) string {
		return fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: %s
  labels:
    app: istiod
    istio: istiod
    istio.io/rev: %q
    app.kubernetes.io/name: istiod
webhooks:
  - name: %s
    clientConfig:
      url: %s
      caBundle: %q
    rules:
      - operations: [CREATE, UPDATE]
        apiGroups: [security.istio.io, networking.istio.io, telemetry.istio.io, extensions.istio.io]
        apiVersions: ["*"]
        resources: ["*"]
    failurePolicy: Fail
    sideEffects: None
    admissionReviewVersions: ["v1"]
%s`, name, revision, webhook, url, bundle, selector)
	}
	fmt.Print(hook("istio-validator-"+revision+"-istio-system", "rev.validation.istio.io", fmt.Sprintf(`    objectSelector:
      matchExpressions:
        - key: istio.io/rev
          operator: In
          values: [%q]
`, revision)))
	fmt.Println("---")
	fmt.Print(hook("istiod-default-validator", "validation.istio.io", ""))
	return 0
}
