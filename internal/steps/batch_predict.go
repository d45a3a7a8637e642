package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/batch"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

func init() {
	Register(Define(Type{
		Name: "batch-predict",
		Doc: "Scores a data set (CSV with a header row, or Parquet) with a model of either format, given by pointer or as a " +
			"registry alias (NAME@champion, NAME@v3), and publishes the predictions to the artifact store: a directory of " +
			"CSV parts (row, key, score, label) and predictions.json. Each chunk of rows is recorded in the store before the " +
			"next is read, with a heartbeat, so an attempt after a crash or a cancel resumes after the last recorded chunk " +
			"instead of scoring any chunk again.",
		Kind: Activity,
	}, batchPredictInputs{ChunkRows: batch.DefaultChunkRows}, runBatchPredict))
}

type batchPredictInputs struct {
	Model     ArtifactRef `json:"model" required:"true" doc:"the model, in Gauntlet's format or ONNX: an artifact pointer (a model step's output), a model directory on the worker, or a registry alias NAME@ALIAS such as credit-risk@champion or credit-risk@v3"`
	Data      string      `json:"data" required:"true" doc:"the rows to score: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI; CSV with a header row or Parquet, holding the columns the model reads"`
	Key       string      `json:"key" doc:"a column of the data copied into the predictions as each row's key (an id)"`
	ChunkRows int         `json:"chunk_rows" doc:"rows scored and recorded at a time (default 10000)"`
}

// BatchPredictOutputs are the outputs of a batch-predict step.
type BatchPredictOutputs struct {
	Predictions  string `json:"predictions" doc:"the predictions, an artifact pointer to a directory of part-NNNNN.csv files (row, key when given, score, label) and predictions.json (model, input, rows, parts)"`
	Rows         int    `json:"rows" doc:"rows scored"`
	Chunks       int    `json:"chunks" doc:"chunks of chunk_rows rows"`
	Resumed      int    `json:"resumed" doc:"chunks an earlier attempt had recorded, which this one did not score again"`
	Scored       int    `json:"scored" doc:"chunks this attempt scored"`
	Model        string `json:"model" doc:"the model that scored: an artifact pointer (an alias resolved)"`
	ModelDigest  string `json:"model_digest" doc:"sha256 of the model's SHA256SUMS"`
	ModelVersion int    `json:"model_version,omitempty" doc:"the registry version an alias named"`
	Format       string `json:"format" doc:"the model's format: gauntlet or onnx"`
	Provider     string `json:"provider" doc:"what scored: go for Gauntlet's own format, the ONNX Runtime execution provider for an ONNX model"`
}

// refBatchModel records the model an alias resolved to, so that every
// attempt of the step scores with the same one even when the alias moves.
const refBatchModel = "batch-model"

func runBatchPredict(ctx context.Context, env Env, in Input, a batchPredictInputs) (*BatchPredictOutputs, error) {
	if a.ChunkRows <= 0 {
		return nil, badInput("chunk_rows", "must be positive, got %d", a.ChunkRows)
	}
	ref, version, err := batchModel(ctx, env, in, a.Model)
	if err != nil {
		return nil, err
	}
	lm, err := loadModel(ctx, env, "model", ref)
	if err != nil {
		return nil, err
	}
	defer lm.Close()
	data, err := env.Artifacts().Data(ctx, a.Data)
	if err != nil {
		return nil, artifactErr("data", err)
	}
	info := lm.Info()
	opts := batch.ReadOptions{Key: a.Key}
	job := batch.Job{
		Store: env.Artifacts().Store(),
		// One job per run and step (a fan-out's items have step ids of
		// their own): the attempts of a step share its progress.
		Ref:         "batch/" + refSegment(in.RunID) + "/" + refSegment(in.StepID),
		Model:       lm.Model,
		Input:       data.Source,
		InputDigest: string(data.Digest),
		Key:         a.Key,
		ChunkRows:   a.ChunkRows,
		Open: func(cols []batch.Column) (batch.Reader, error) {
			return batch.Open(data.Path, cols, info.Schema, opts)
		},
		Progress: func(p batch.Progress) {
			env.Progress(map[string]any{"chunks": p.Chunks, "rows": p.Rows, "resumed": p.Resumed})
		},
	}
	if strings.HasPrefix(data.Path, workspace.BuiltinScheme) {
		// A generated source has no file to stream: it is generated whole,
		// with the model's schema, and its content digest identifies it.
		f, err := dataset.LoadFrame(data.Path, dataset.WithSchema(info.Schema))
		if err != nil {
			return nil, dataError("data", data.Source, err)
		}
		job.InputDigest = f.Digest
		job.Open = func(cols []batch.Column) (batch.Reader, error) { return batch.OpenFrame(f, cols, opts) }
	}
	res, err := batch.Run(ctx, job)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, batchError(data.Source, err)
	}
	store := env.Artifacts().Store()
	return &BatchPredictOutputs{
		Predictions:  artifact.PointerTo(store, artifact.KindTree, res.Output).String(),
		Rows:         res.Rows,
		Chunks:       res.Chunks,
		Resumed:      res.Resumed,
		Scored:       res.Scored,
		Model:        lm.Name,
		ModelDigest:  lm.digest(),
		ModelVersion: version,
		Format:       info.Format,
		Provider:     info.Provider,
	}, nil
}

// batchError keeps what bad data or a store failure says and whether
// another attempt can mend it: data that does not fit the model cannot.
func batchError(src string, err error) error {
	err = fmt.Errorf("batch-predict %s: %w", src, err)
	if errors.Is(err, dataset.ErrBadData) || errors.Is(err, os.ErrNotExist) {
		return Permanent(kindBadInput, err)
	}
	return err
}

// batchModel is the model to score with: the ref as given, or for a
// registry alias the version it names, recorded on the first attempt so
// that later attempts take the same one.
func batchModel(ctx context.Context, env Env, in Input, ref ArtifactRef) (ArtifactRef, int, error) {
	name, alias, ok := registryAlias(ref)
	if !ok {
		return ref, 0, nil
	}
	if p, ok, err := earlier(ctx, env, in, refBatchModel); err != nil {
		return ArtifactRef{}, 0, err
	} else if ok {
		r := ArtifactRef{text: p.String(), ptr: p, label: ref.text}
		return r, versionOf(ctx, env, name, p), nil
	}
	store := env.Artifacts().Store()
	mv, err := registry.New(store).Resolve(ctx, name, alias)
	if errors.Is(err, registry.ErrNotFound) {
		return ArtifactRef{}, 0, badInput("model", "%s: %v (the registry lives in the store %s)", ref.text, err, store.Location())
	}
	if err != nil {
		return ArtifactRef{}, 0, fmt.Errorf("with.model: resolve %s: %w", ref.text, err)
	}
	p, err := record(ctx, env, in, refBatchModel, artifact.PointerTo(store, artifact.KindTree, mv.Artifact))
	if err != nil {
		return ArtifactRef{}, 0, err
	}
	return ArtifactRef{text: p.String(), ptr: p, label: ref.text}, versionOf(ctx, env, name, p), nil
}

// registryAlias reads NAME@ALIAS from a ref that is neither a pointer nor
// a path on this host.
func registryAlias(ref ArtifactRef) (name, alias string, ok bool) {
	if ref.ptr.Digest != "" || strings.ContainsAny(ref.text, `/\`) {
		return "", "", false
	}
	name, alias, ok = strings.Cut(ref.text, "@")
	if !ok || alias == "" || registry.ValidateName(name) != nil {
		return "", "", false
	}
	if _, err := os.Stat(ref.text); err == nil {
		return "", "", false
	}
	return name, alias, true
}

// versionOf is the registry version of name holding the artifact p, 0
// when none does (it was deleted since).
func versionOf(ctx context.Context, env Env, name string, p artifact.Pointer) int {
	m, err := registry.New(env.Artifacts().Store()).Get(ctx, name)
	if err != nil {
		return 0
	}
	for _, v := range m.Versions {
		if v.Artifact == p.Digest {
			return v.Version
		}
	}
	return 0
}
