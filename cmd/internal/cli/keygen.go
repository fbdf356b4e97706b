package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tobira-ac/tobira/internal/signed"
)

// Keygen returns the keygen command shared by tobira-hq (HQ signing keys)
// and tobira-release (release keys): one Ed25519 key pair in the PEM files
// every tobira key uses (signed.WriteKeyPair). pin names the configuration
// key under which devices pin the public half, for the help text.
func Keygen(pin string) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen --out PREFIX",
		Short: "Make an Ed25519 signing key pair: PREFIX.key (secret) and PREFIX.pub",
		Long: `Make an Ed25519 signing key pair: PREFIX.key (PKCS #8 PEM, mode 0600, keep it
secret) and PREFIX.pub (PKIX PEM; devices pin it as ` + pin + `). An existing
file is never overwritten.`,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return Usagef("--out PREFIX is required")
			}
			pub, priv, err := signed.GenerateKey()
			if err != nil {
				return err
			}
			if err := signed.WriteKeyPair(out+".key", out+".pub", priv); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote %s.key (keep secret) and %s.pub (pin as %s); key id %s\n",
				out, out, pin, signed.KeyID(pub))
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "file name prefix: writes PREFIX.key and PREFIX.pub")
	return c
}
