package extstep

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
)

// ArtifactsDir is the directory under GAUNTLET_OUTPUT_DIR whose entries
// become outputs: artifacts/<key>, a file or a directory, is published to
// the store and output <key> is its pointer.
const ArtifactsDir = "artifacts"

// RefSuffix ends the variable that holds an input's pointer, beside the
// variable that holds its local path.
const RefSuffix = "_REF"

// materializeInputs makes every top-level input that is an artifact
// pointer available on this host. It returns the inputs with those values
// replaced by their local paths, as the command reads them, and the
// pointers by key.
func materializeInputs(ctx context.Context, env Env, with map[string]any) (map[string]any, map[string]string, error) {
	local := make(map[string]any, len(with))
	refs := map[string]string{}
	keys := make([]string, 0, len(with))
	for k := range with {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		local[k] = with[k]
		s, ok := with[k].(string)
		if !ok {
			continue
		}
		p, err := artifact.ParsePointer(strings.TrimSpace(s))
		if err != nil {
			continue
		}
		path, err := env.Artifacts().Materialize(ctx, p)
		if err != nil {
			return nil, nil, fmt.Errorf("with.%s: %w", k, err)
		}
		local[k], refs[k] = path, p.String()
	}
	return local, refs, nil
}

// publishOutputs publishes the attempt's artifacts/<key> entries, its
// output directory and its log, and sets their outputs: a path means
// nothing on the host that runs the next step.
func publishOutputs(ctx context.Context, env Env, outputs map[string]any, outputDir, logPath string) error {
	dir := filepath.Join(outputDir, ArtifactsDir)
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return retryable(KindHost, fmt.Errorf("read %s: %w", dir, err))
	}
	for _, e := range entries {
		key := e.Name()
		if strings.HasPrefix(key, ".") {
			// A command's temporary file, left by an atomic rename that
			// did not happen.
			continue
		}
		if key == OutputDirKey || key == LogKey {
			return permanent(KindBadOutput, fmt.Errorf("%s/%s: %q is an output Gauntlet sets", ArtifactsDir, key, key))
		}
		if _, dup := outputs[key]; dup {
			return permanent(KindBadOutput, fmt.Errorf("output %q is set both by %s/%s and by outputs.json or ::output", key, ArtifactsDir, key))
		}
		if !e.IsDir() && !e.Type().IsRegular() {
			return permanent(KindBadOutput, fmt.Errorf("%s/%s is neither a file nor a directory (%s)", ArtifactsDir, key, e.Type()))
		}
		p, err := publish(ctx, env, filepath.Join(dir, key))
		if err != nil {
			return err
		}
		outputs[key] = p
	}
	if outputs[OutputDirKey], err = publish(ctx, env, outputDir); err != nil {
		return err
	}
	if outputs[LogKey], err = publish(ctx, env, logPath); err != nil {
		return err
	}
	return nil
}

func publish(ctx context.Context, env Env, path string) (string, error) {
	p, err := env.Artifacts().Publish(ctx, path)
	if err != nil {
		var we *workspace.Error
		if errors.As(err, &we) && we.Kind == workspace.KindBadInput {
			// What the command wrote cannot be stored as it is (a
			// symbolic link): another attempt writes the same.
			return "", permanent(KindBadOutput, err)
		}
		return "", err
	}
	return p.String(), nil
}
