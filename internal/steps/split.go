package steps

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

func init() {
	Register(Define(Type{
		Name: "split",
		Doc: "Cuts labelled data into k folds for cross-validation (scikit-learn's StratifiedKFold with shuffling: each " +
			"fold keeps the data's share of positives). For each fold it stores two CSV files in the artifact store, the " +
			"fold's rows (test) and all the others (train), and outputs their artifact pointers, for train and evaluate " +
			"steps that fan out over the folds.",
		Kind: Activity,
	}, splitInputs{Folds: 5, Seed: 1, Stratify: true}, runSplit))
}

type splitInputs struct {
	Data          string   `json:"data" required:"true" doc:"CSV path or builtin: URI"`
	Label         string   `json:"label" required:"true" doc:"label column"`
	PositiveLabel []string `json:"positive_label" required:"true" doc:"label values of the positive class (list or comma-separated)"`
	Folds         int      `json:"folds" doc:"number of folds k, at least 2 (default 5)"`
	Seed          int      `json:"seed" doc:"seed of the shuffle (default 1)"`
	Stratify      bool     `json:"stratify" doc:"keep each fold's share of positives equal to the data's (default true)"`
	Sensitive     []string `json:"sensitive" doc:"sensitive columns (list or comma-separated), kept as such in the folds"`
	Ignore        []string `json:"ignore" doc:"columns the folds leave empty (list or comma-separated)"`
}

// Fold is one fold of a split.
type Fold struct {
	Index     int    `json:"index"`
	Train     string `json:"train"`
	Test      string `json:"test"`
	TrainRows int    `json:"train_rows"`
	TestRows  int    `json:"test_rows"`
}

// SplitOutputs are the outputs of a split step.
type SplitOutputs struct {
	Folds      []Fold `json:"folds" doc:"per fold: index, train and test (artifact pointers to CSV files), train_rows and test_rows; fan out over it with for_each"`
	K          int    `json:"k" doc:"the number of folds"`
	Rows       int    `json:"rows" doc:"rows of data"`
	DataDigest string `json:"data_digest" doc:"digest of the data that was split"`
}

func runSplit(ctx context.Context, env Env, _ Input, a splitInputs) (*SplitOutputs, error) {
	if a.Folds < 2 {
		return nil, badInput("folds", "must be at least 2, got %d", a.Folds)
	}
	if a.Seed < 0 {
		return nil, badInput("seed", "must not be negative")
	}
	opts := []dataset.Option{dataset.WithLabel(a.Label, a.PositiveLabel...)}
	if len(a.Sensitive) > 0 {
		opts = append(opts, dataset.WithSensitive(a.Sensitive...))
	}
	if len(a.Ignore) > 0 {
		opts = append(opts, dataset.WithIgnored(a.Ignore...))
	}
	src, err := localData(ctx, env, "data", a.Data)
	if err != nil {
		return nil, err
	}
	d, err := dataset.LoadFrame(src, opts...)
	if err != nil {
		return nil, dataError("data", a.Data, err)
	}
	y := make([]float64, d.Len())
	for i, v := range d.Y {
		y[i] = float64(v)
	}
	folds, err := kFold(y, a.Folds, uint64(a.Seed), a.Stratify)
	if err != nil {
		return nil, badInput("folds", "%v", err)
	}
	store := env.Artifacts().Store()
	put := func(idx []int) (string, error) {
		b, err := frameCSV(d, idx)
		if err != nil {
			return "", err
		}
		info, err := store.Put(ctx, bytes.NewReader(b))
		if err != nil {
			return "", fmt.Errorf("split: store a fold: %w", err)
		}
		return artifact.PointerTo(store, artifact.KindBlob, info.Digest).String(), nil
	}
	out := &SplitOutputs{K: a.Folds, Rows: d.Len(), DataDigest: d.Digest, Folds: make([]Fold, 0, a.Folds)}
	for k, test := range folds {
		var train []int
		for j, other := range folds {
			if j != k {
				train = append(train, other...)
			}
		}
		slices.Sort(train)
		f := Fold{Index: k, TrainRows: len(train), TestRows: len(test)}
		if f.Train, err = put(train); err != nil {
			return nil, err
		}
		if f.Test, err = put(test); err != nil {
			return nil, err
		}
		out.Folds = append(out.Folds, f)
	}
	return out, nil
}

// kFold deals the rows into k folds after a seeded shuffle: when stratified,
// each class is dealt on its own, so every fold gets its share of each. Rows
// keep their order within a fold.
func kFold(y []float64, k int, seed uint64, stratify bool) ([][]int, error) {
	if k > len(y) {
		return nil, fmt.Errorf("%d folds of %d rows", k, len(y))
	}
	groups := [][]int{make([]int, len(y))}
	for i := range y {
		groups[0][i] = i
	}
	if stratify {
		groups = [][]int{nil, nil}
		for i, v := range y {
			groups[int(v)] = append(groups[int(v)], i)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0xf01d5))
	folds := make([][]int, k)
	next := 0
	for _, g := range groups {
		rng.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
		// Each class starts where the last one stopped, so the folds'
		// sizes differ by one row at most.
		for _, i := range g {
			folds[next%k] = append(folds[next%k], i)
			next++
		}
	}
	for f := range folds {
		slices.Sort(folds[f])
	}
	return folds, nil
}
