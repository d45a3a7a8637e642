package workerhost

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/codec"
	"github.com/gauntlet-ml/gauntlet/internal/logging"
	"github.com/gauntlet-ml/gauntlet/internal/secrets"
)

// Where payload encryption keys come from when --codec-keys is not given:
// a file named by one variable, or the key ring itself in the other (for
// platforms that inject secrets as variables). The file wins.
const (
	EnvCodecKeysFile = "GAUNTLET_CODEC_KEYS_FILE"
	EnvCodecKeys     = "GAUNTLET_CODEC_KEYS"
)

// Codec is the payload encryption of one process: the worker, `gauntlet
// dev` and every CLI command that reads or starts runs must hold the same
// key ring.
type Codec struct {
	*codec.Codec
	keys codec.Keys
}

// LoadCodec reads the key ring from file (the --codec-keys flag), else from
// the file named by GAUNTLET_CODEC_KEYS_FILE, else from GAUNTLET_CODEC_KEYS.
// It returns nil when none is set: payloads then stay plain, as before
// encryption existed. Errors name the flag or variable and the file.
func LoadCodec(file string, getenv func(string) string) (*Codec, error) {
	var data []byte
	var source string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--codec-keys: %w", err)
		}
		data, source = b, "--codec-keys "+file
	case getenv(EnvCodecKeysFile) != "":
		path := getenv(EnvCodecKeysFile)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvCodecKeysFile, err)
		}
		data, source = b, EnvCodecKeysFile+" "+path
	case getenv(EnvCodecKeys) != "":
		data, source = []byte(getenv(EnvCodecKeys)), EnvCodecKeys
	default:
		return nil, nil
	}
	keys, err := codec.ParseKeys(data, source)
	if err != nil {
		return nil, err
	}
	c, err := codec.New(keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return &Codec{Codec: c, keys: keys}, nil
}

// DialOption makes a client encrypt what it sends and decrypt what it
// reads; it is meant for tclient.Dial's adjust arguments. Failure messages
// are encrypted too: a step's error often quotes its inputs.
func (c *Codec) DialOption(co *client.Options) {
	dc := codec.NewDataConverter(co.DataConverter, c.Codec)
	co.DataConverter = dc
	co.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: dc, EncodeCommonAttributes: true})
}

// Secrets returns the keys as they are written in a key file, so that a
// log line quoting one is masked.
func (c *Codec) Secrets() []string {
	out := make([]string, 0, len(c.keys.ByID))
	for _, key := range c.keys.ByID {
		out = append(out, base64.StdEncoding.EncodeToString(key))
	}
	return out
}

// String describes the ring without key material, for the start-up line.
func (c *Codec) String() string {
	ids := make([]string, 0, len(c.keys.ByID))
	for id := range c.keys.ByID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return fmt.Sprintf("key %s encrypts; ring %s", c.keys.Current, strings.Join(ids, ", "))
}

// NewSecrets collects what a worker process must keep out of its logs: the
// values of its secret-named environment variables and its codec keys (c
// may be nil).
func NewSecrets(environ []string, c *Codec) *secrets.Set {
	s := &secrets.Set{}
	s.Add(secrets.FromEnv(environ)...)
	if c != nil {
		s.Add(c.Secrets()...)
	}
	return s
}

// NewLogger returns the process logger: text or JSON (format) at level,
// with every secret value masked.
func NewLogger(w io.Writer, known *secrets.Set, format, level string) (*slog.Logger, error) {
	l, err := logging.New(w, format, level)
	if err != nil {
		return nil, err
	}
	return slog.New(secrets.NewRedactingHandler(l.Handler(), known.Values)), nil
}
