package cli

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/codec"
	"github.com/gauntlet-ml/gauntlet/internal/signing"
)

func (a *app) keysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Reviewers' signing keys for signed approvals, and payload encryption keys"}
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
	cmd.AddCommand(gen, a.codecKeyCommand())
	return cmd
}

func (a *app) codecKeyCommand() *cobra.Command {
	var ring string
	var stage bool
	cmd := &cobra.Command{
		Use:   "codec ID --ring FILE [--stage]",
		Short: "Add a new payload encryption key to a codec key ring (made if missing)",
		Long: `codec adds a random 32-byte AES-256 key as "ID:BASE64KEY" to the ring --ring
names, creating it readable by you alone. It goes last, so it encrypts from
now on; with --stage it goes above the last line instead, so that every
reader can learn it before anything is encrypted with it (then run codec
again without --stage on a copy, or move the line last). The ring is
rewritten whole through a temporary file: an interrupted write leaves the old
one.`,
		Args: exactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if ring == "" {
				return usagef("--ring FILE is required")
			}
			id := args[0]
			old, err := os.ReadFile(ring)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("keys codec: %w", err)
			}
			key := make([]byte, codec.KeySize)
			if _, err := rand.Read(key); err != nil {
				return fmt.Errorf("keys codec: %w", err)
			}
			entry := id + ":" + base64.StdEncoding.EncodeToString(key)
			if _, err := codec.ParseKeys([]byte(entry), "ID"); err != nil {
				return usagef("%v", err)
			}
			lines := strings.Split(strings.TrimRight(string(old), "\n"), "\n")
			if len(old) == 0 {
				lines = nil
			}
			if len(lines) > 0 {
				keys, err := codec.ParseKeys(old, ring)
				if err != nil {
					return usagef("%v", err)
				}
				if _, dup := keys.ByID[id]; dup {
					return usagef("%s already has a key %q: ids name keys for good, pick another", ring, id)
				}
			} else if stage {
				return usagef("--stage needs a ring with a current key; %s has none", ring)
			}
			if stage {
				lines = append(lines[:len(lines)-1:len(lines)-1], entry, lines[len(lines)-1])
			} else {
				lines = append(lines, entry)
			}
			text := strings.Join(lines, "\n") + "\n"
			if _, err := codec.ParseKeys([]byte(text), ring); err != nil {
				return fmt.Errorf("keys codec: the new ring does not parse: %w", err)
			}
			if err := atomicfile.Write(ring, []byte(text)); err != nil {
				return fmt.Errorf("keys codec: %w", err)
			}
			current := !stage
			if a.jsonOut() {
				return a.printJSON(map[string]any{"ring": ring, "id": id, "current": current})
			}
			if current {
				fmt.Fprintf(a.stdout, "key %s added to %s; it encrypts from now on\n", id, ring)
			} else {
				fmt.Fprintf(a.stdout, "key %s staged in %s; it decrypts, and encrypts once it is last\n", id, ring)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ring, "ring", "", "the key ring file (what --codec-keys reads)")
	cmd.Flags().BoolVar(&stage, "stage", false, "add the key above the current one rather than making it current")
	return cmd
}
