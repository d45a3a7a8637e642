// Package mltest holds helpers shared by the ML packages' tests: finding the
// repository root, the shared data sets, and loading UCI Adult.
package mltest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"gonum.org/v1/gonum/mat"
)

// RepoRoot walks up from the working directory to the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Fixture returns the path of a file under testdata/ml at the repository root.
func Fixture(t testing.TB, name string) string {
	return filepath.Join(RepoRoot(t), "testdata", "ml", name)
}

// AdultDir returns the UCI Adult directory, found through GAUNTLET_DATASETS
// (default ../shared/datasets relative to the repository root), or skips.
func AdultDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv("GAUNTLET_DATASETS")
	if root == "" {
		root = filepath.Join(RepoRoot(t), "..", "shared", "datasets")
	}
	dir := filepath.Join(root, "adult")
	for _, f := range []string{"adult.data", "adult.test"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			testkit.Need(t, "needs the UCI Adult data set: set GAUNTLET_DATASETS to a directory holding adult/adult.data and adult/adult.test (make test defaults it to ../shared/datasets): %v", err)
		}
	}
	return dir
}

// AdultOptions are the load options for Adult: label Y with both spellings
// of the positive class, sex and race sensitive, the sampling weight fnlwgt
// ignored.
func AdultOptions() []dataset.Option {
	return []dataset.Option{
		dataset.WithLabel("Y", ">50K,>50K."),
		dataset.WithSensitive("sex", "race"),
		dataset.WithIgnored("fnlwgt"),
	}
}

// Adult is UCI Adult loaded and encoded once per test binary.
type Adult struct {
	Train, Test   *dataset.Dataset
	Encoder       *dataset.Encoder
	XTrain, XTest *mat.Dense
}

var (
	adultOnce sync.Once
	adult     *Adult
	adultErr  error
)

// LoadAdult loads adult.data and adult.test and encodes both with an encoder
// fitted on adult.data, or skips when the files are absent.
func LoadAdult(t testing.TB) *Adult {
	t.Helper()
	dir := AdultDir(t)
	adultOnce.Do(func() {
		a := &Adult{}
		if a.Train, adultErr = dataset.Load(filepath.Join(dir, "adult.data"), AdultOptions()...); adultErr != nil {
			return
		}
		if a.Test, adultErr = dataset.Load(filepath.Join(dir, "adult.test"), AdultOptions()...); adultErr != nil {
			return
		}
		if a.Encoder, adultErr = dataset.FitEncoder(a.Train, dataset.EncoderOptions{}); adultErr != nil {
			return
		}
		if a.XTrain, adultErr = a.Encoder.Transform(a.Train); adultErr != nil {
			return
		}
		a.XTest, adultErr = a.Encoder.Transform(a.Test)
		adult = a
	})
	if adultErr != nil {
		t.Fatal(adultErr)
	}
	return adult
}
