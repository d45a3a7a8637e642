package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// Files and directories cross step boundaries as artifact pointers
// (artifact.Pointer's text form, STORE/trees/sha256/HEX for a directory,
// STORE/blobs/sha256/HEX for a file): a step publishes what it produces to
// the fleet's store and outputs the pointer; a step that takes one
// materialises it into its host's cache through env.Artifacts(). No step
// opens a path another step wrote, so consecutive steps may run on any
// hosts that share the store.
//
// The `model_digest` outputs stay the sha256 of the model's SHA256SUMS
// (which covers the manifest and the weights): the digest serving, the
// scoring interface and `run:` trainers report. The pointer's digest is the
// stored tree's, which the registry records.

// ArtifactRef is a `with:` value naming a file or directory: the pointer an
// earlier step output, or for convenience a path on the worker's host (a
// model directory of yours, given to `gauntlet step`), which is published
// to the store before it is used, so that what the step reads and records
// is the stored artifact.
type ArtifactRef struct {
	text string
	ptr  artifact.Pointer
	// label names the artifact on pages, when the ref came from somewhere
	// with a better name than its digest (the registry's champion).
	label string
}

// DecodeInput implements stepio.InputDecoder: a pointer's text or a path;
// null or blank text leave the ref unset.
func (r *ArtifactRef) DecodeInput(v any) error {
	if v == nil {
		return nil
	}
	s, err := stepio.String(v)
	if err != nil {
		return err
	}
	if s == "" {
		return nil
	}
	p, err := artifact.ParsePointer(s)
	switch {
	case err == nil:
		r.ptr = p
	case !errors.Is(err, artifact.ErrNotPointer):
		return &stepio.Error{Msg: err.Error()}
	case strings.Contains(s, "://"):
		return &stepio.Error{Msg: fmt.Sprintf("%s is not an artifact pointer (STORE/trees/sha256/HEX or STORE/blobs/sha256/HEX, as a step outputs) nor a local path", workspace.Redact(s))}
	}
	r.text = s
	return nil
}

// IsZero reports an unset ref.
func (r ArtifactRef) IsZero() bool { return r.text == "" }

// String is the ref as given.
func (r ArtifactRef) String() string { return r.text }

// MarshalText writes the ref as given, so a decoded input reads back the
// same.
func (r ArtifactRef) MarshalText() ([]byte, error) { return []byte(r.text), nil }

// Ref makes a ref of text, as DecodeInput reads it.
func Ref(text string) (ArtifactRef, error) {
	var r ArtifactRef
	err := r.DecodeInput(text)
	return r, err
}

// pointer is the ref's pointer, publishing a local path first.
func (r ArtifactRef) pointer(ctx context.Context, env Env, key string) (artifact.Pointer, error) {
	if r.ptr.Digest != "" {
		return r.ptr, nil
	}
	if r.text == "" {
		return artifact.Pointer{}, badInput(key, "required")
	}
	if _, err := os.Stat(r.text); err != nil {
		return artifact.Pointer{}, badInput(key, "%q is neither an artifact pointer nor a file or directory on this worker (%v)", r.text, errors.Unwrap(err))
	}
	p, err := env.Artifacts().Publish(ctx, r.text)
	if err != nil {
		return artifact.Pointer{}, artifactErr(key, err)
	}
	env.Logger().Info("published a local path given as input", "input", key, "path", r.text, "artifact", p.String())
	return p, nil
}

// materialize makes the artifact available on this host until the step
// ends and returns its path with its pointer.
func (r ArtifactRef) materialize(ctx context.Context, env Env, key string) (string, artifact.Pointer, error) {
	p, err := r.pointer(ctx, env, key)
	if err != nil {
		return "", p, err
	}
	path, err := env.Artifacts().Materialize(ctx, p)
	if err != nil {
		return "", p, artifactErr(key, err)
	}
	return path, p, nil
}

// artifactErr puts a store or data failure under the input it served,
// keeping its kind (see workspace.Error).
func artifactErr(key string, err error) error {
	var we *workspace.Error
	if errors.As(err, &we) {
		return &workspace.Error{Kind: we.Kind, Err: fmt.Errorf("with.%s: %w", key, err)}
	}
	return fmt.Errorf("with.%s: %w", key, err)
}

// publish stores a file or directory the step wrote and returns its
// pointer's text, the output later steps take.
func publish(ctx context.Context, env Env, what, path string) (string, error) {
	p, err := env.Artifacts().Publish(ctx, path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return p.String(), nil
}

// publishJSON writes v as a JSON file in the step directory and publishes
// it.
func publishJSON(ctx context.Context, env Env, name string, v any) (string, error) {
	path := filepath.Join(env.Dir(), name)
	if err := writeJSON(path, v); err != nil {
		return "", err
	}
	return publish(ctx, env, "store "+name, path)
}

// loadDataset resolves src (a path, file://, s3://, http(s)://, an
// artifact pointer or builtin:) into a local file and loads it. The data
// set's Source is src as errors may show it (no credentials or query).
func loadDataset(ctx context.Context, env Env, key, src string, opts ...dataset.Option) (*dataset.Dataset, workspace.Data, error) {
	data, err := env.Artifacts().Data(ctx, src)
	if err != nil {
		return nil, data, artifactErr(key, err)
	}
	d, err := dataset.Load(data.Path, opts...)
	if err != nil {
		return nil, data, dataError(key, data.Source, err)
	}
	d.Source = data.Source
	return d, data, nil
}

// loadFrame is loadDataset into a column-wise frame (float32 where values
// allow, categories as codes), for data sets too large to hold as records.
func loadFrame(ctx context.Context, env Env, key, src string, opts ...dataset.Option) (*dataset.Frame, workspace.Data, error) {
	data, err := env.Artifacts().Data(ctx, src)
	if err != nil {
		return nil, data, artifactErr(key, err)
	}
	d, err := dataset.LoadFrame(data.Path, opts...)
	if err != nil {
		return nil, data, dataError(key, data.Source, err)
	}
	return d, data, nil
}

// readInput reads a small file input (a JSON report of an earlier step)
// given as a pointer, path or URL.
func readInput(ctx context.Context, env Env, key, src string) ([]byte, string, error) {
	data, err := env.Artifacts().Data(ctx, src)
	if err != nil {
		return nil, "", artifactErr(key, err)
	}
	b, err := os.ReadFile(data.Path)
	if err != nil {
		return nil, data.Source, artifactErr(key, err)
	}
	return b, data.Source, nil
}

// Refs in the store remember what an attempt of a step published, so that
// a retry of the same run, step and inputs, on any host, reuses it rather
// than producing a second one.
func attemptRef(in Input, name string) string {
	return "steps/" + refSegment(in.RunID) + "/" + refSegment(in.StepID) + "/" + inputsDigest(in) + "/" + name
}

// refSegment makes an id usable as one segment of a ref name.
func refSegment(s string) string {
	s = safeName(s)
	if strings.HasPrefix(s, ".") {
		s = "_" + s
	}
	return s
}

// earlier returns what an earlier attempt recorded under name, if any.
func earlier(ctx context.Context, env Env, in Input, name string) (artifact.Pointer, bool, error) {
	ref, err := env.Artifacts().Store().GetRef(ctx, attemptRef(in, name))
	if errors.Is(err, artifact.ErrNotFound) {
		return artifact.Pointer{}, false, nil
	}
	if err != nil {
		return artifact.Pointer{}, false, fmt.Errorf("look for an earlier attempt's %s: %w", name, err)
	}
	p, err := artifact.ParsePointer(string(ref.Data))
	if err != nil {
		return artifact.Pointer{}, false, fmt.Errorf("an earlier attempt's %s: %w", name, err)
	}
	return p, true, nil
}

// record remembers p under name for later attempts and returns what is
// recorded: p, or what a concurrent attempt recorded first.
func record(ctx context.Context, env Env, in Input, name string, p artifact.Pointer) (artifact.Pointer, error) {
	store := env.Artifacts().Store()
	_, err := store.PutRef(ctx, attemptRef(in, name), []byte(p.String()), "")
	if errors.Is(err, artifact.ErrConflict) {
		q, ok, err := earlier(ctx, env, in, name)
		if err != nil || !ok {
			return artifact.Pointer{}, fmt.Errorf("record %s: %w", name, cmpErr(err, "it vanished"))
		}
		return q, nil
	}
	if err != nil {
		return artifact.Pointer{}, fmt.Errorf("record %s: %w", name, err)
	}
	return p, nil
}

func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// refModel is the name attempt refs record models under.
const refModel = "model"

// earlierModel is the model an earlier attempt of this step published, if
// any, materialised here.
func earlierModel(ctx context.Context, env Env, in Input) (*loadedModel, bool, error) {
	p, ok, err := earlier(ctx, env, in, refModel)
	if err != nil || !ok {
		return nil, false, err
	}
	m, err := loadModel(ctx, env, "model", ArtifactRef{text: p.String(), ptr: p})
	if err != nil {
		return nil, false, fmt.Errorf("an earlier attempt's model: %w", err)
	}
	return m, true, nil
}

// publishModel has save write a model directory into the step directory,
// publishes it and records it for later attempts. It returns the model
// loaded from where it was saved and whether a concurrent attempt's model
// won instead (then that one is returned, materialised). done closes the
// model and removes the local copy; call it when the step no longer reads
// the model.
func publishModel(ctx context.Context, env Env, in Input, save func(dir string) error) (m *loadedModel, reused bool, done func(), err error) {
	done = func() {}
	stage, err := os.MkdirTemp(env.Dir(), "model-")
	if err != nil {
		return nil, false, done, fmt.Errorf("save model: %w", err)
	}
	done = func() { os.RemoveAll(stage) }
	dir := filepath.Join(stage, "model")
	if err := save(dir); err != nil {
		return nil, false, done, err
	}
	p, err := env.Artifacts().Publish(ctx, dir)
	if err != nil {
		return nil, false, done, fmt.Errorf("store model: %w", err)
	}
	won, err := record(ctx, env, in, refModel, p)
	if err != nil {
		return nil, false, done, err
	}
	if won != p {
		done()
		m, err := loadModel(ctx, env, "model", ArtifactRef{text: won.String(), ptr: won})
		return m, true, closer(m), err
	}
	m, err = openModel(env, "model", dir, p)
	remove := done
	return m, false, func() { closer(m)(); remove() }, err
}

// closer closes m, when there is one.
func closer(m *loadedModel) func() {
	return func() {
		if m != nil {
			m.Close()
		}
	}
}
