package cli

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/signing"
)

func (a *app) keysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Reviewers' signing keys for signed approvals"}
	var out string
	gen := &cobra.Command{
		Use:   "generate NAME --out FILE",
		Short: "Make an Ed25519 key pair; print the line to add to the workers' reviewer key file",
		Long: `generate writes a new Ed25519 private key (PEM PKCS#8, readable by you alone)
to --out and prints "NAME ssh-ed25519 AAAA...": the line an operator adds to
the file the workers read with --reviewer-keys. An existing file is never
overwritten.`,
		Args: exactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out FILE is required")
			}
			pub, priv, err := signing.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			pem, err := signing.MarshalPrivateKey(priv)
			if err != nil {
				return err
			}
			line := signing.FormatKeyRing(signing.KeyRing{args[0]: pub})
			// Check the name the way the workers will, before writing a key
			// that could never be used.
			if _, err := signing.Parse(line, "NAME"); err != nil {
				return usagef("%v", err)
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, fs.ErrExist) {
				return usagef("--out %s already exists; it is never overwritten", out)
			}
			if err != nil {
				return fmt.Errorf("keys generate: %w", err)
			}
			if _, err := f.Write(pem); err != nil {
				f.Close()
				os.Remove(out)
				return fmt.Errorf("keys generate: write %s: %w", out, err)
			}
			if err := f.Close(); err != nil {
				os.Remove(out)
				return fmt.Errorf("keys generate: write %s: %w", out, err)
			}
			if a.jsonOut() {
				return a.printJSON(map[string]string{"reviewer": args[0], "private_key": out, "public_key": signing.FormatPublicKey(pub), "fingerprint": signing.Fingerprint(pub)})
			}
			fmt.Fprint(a.stdout, string(line))
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "", "where to write the private key")
	cmd.AddCommand(gen)
	return cmd
}
