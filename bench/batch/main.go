// Command batch measures package batch: rows scored per second and the
// peak memory of one process scoring a large CSV file into a store.
//
//	batch prepare OUTDIR ROWS
//	    writes OUTDIR/data.csv (ROWS rows of builtin:credit-risk, seed 11,
//	    with a header) and a logistic regression trained on other
//	    credit-risk rows, in Gauntlet's format (OUTDIR/gauntlet) and
//	    exported to ONNX (OUTDIR/onnx); prints the model's number of encoded
//	    features.
//	batch run MODEL_DIR DATA_CSV STORE_DIR [CHUNK_ROWS]
//	    scores DATA_CSV with the model into a file store in STORE_DIR under a
//	    fresh progress ref and prints one tab-separated line: format, rows,
//	    chunks, seconds hashing the input, seconds scoring and storing, rows
//	    per second of the latter, peak resident memory (MiB, getrusage).
//
// ONNX Runtime is found through GAUNTLET_ONNXRUNTIME_LIB.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/batch"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "prepare":
		err = prepare(os.Args[2], os.Args[3])
	case (len(os.Args) == 5 || len(os.Args) == 6) && os.Args[1] == "run":
		chunk := 0
		if len(os.Args) == 6 {
			chunk, err = strconv.Atoi(os.Args[5])
		}
		if err == nil {
			err = run(os.Args[2], os.Args[3], os.Args[4], chunk)
		}
	default:
		err = fmt.Errorf("usage: batch prepare OUTDIR ROWS | batch run MODEL_DIR DATA_CSV STORE_DIR [CHUNK_ROWS]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "batch:", err)
		os.Exit(1)
	}
}

func prepare(out, rowsArg string) error {
	rows, err := strconv.Atoi(rowsArg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "data.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	var header []string
	for _, c := range dataset.CreditRiskSchema.Columns {
		header = append(header, c.Name)
	}
	w.Write(header)
	// In slices, so that the generator's rows need not all be in memory.
	for done := 0; done < rows; {
		n := min(100000, rows-done)
		w.WriteAll(dataset.CreditRisk(dataset.CreditRiskParams{Rows: n, Seed: uint64(11 + done), Bias: 0.3}))
		done += n
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := dataset.Load("builtin:credit-risk?rows=20000&seed=1&bias=0.3")
	if err != nil {
		return err
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{Unseen: dataset.UnseenOther})
	if err != nil {
		return err
	}
	x, err := enc.Transform(d)
	if err != nil {
		return err
	}
	net, err := model.Train(context.Background(), x, d.Y, model.Config{Kind: model.LogReg})
	if err != nil {
		return err
	}
	gdir := filepath.Join(out, "gauntlet")
	m := &modelfile.Manifest{Kind: model.LogReg, Schema: d.Schema, Features: enc.FeatureNames(), Preprocessing: enc, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: d.Digest, Params: map[string]any{scoring.NegativeLabelParam: "no"}, CreatedAt: time.Now().UTC()}}
	if _, err := modelfile.Save(gdir, m, net.Tensors()); err != nil {
		return err
	}
	a, err := modelfile.Load(gdir)
	if err != nil {
		return err
	}
	if _, err := onnxmodel.Export(a, filepath.Join(out, "onnx")); err != nil {
		return err
	}
	fmt.Println(enc.Width())
	return nil
}

func run(modelDir, data, storeDir string, chunkRows int) error {
	ctx := context.Background()
	m, err := scoring.Open(modelDir, scoring.Options{})
	if err != nil {
		return err
	}
	defer m.Close()
	store, err := artifact.Open(ctx, "file://"+storeDir)
	if err != nil {
		return err
	}
	t0 := time.Now()
	digest, err := fileDigest(data)
	if err != nil {
		return err
	}
	hashed := time.Since(t0)
	t1 := time.Now()
	res, err := batch.Run(ctx, batch.Job{
		Store: store, Ref: fmt.Sprintf("batch/bench-%d", time.Now().UnixNano()), Model: m,
		Input: data, InputDigest: digest, ChunkRows: chunkRows,
		Open: func(cols []batch.Column) (batch.Reader, error) {
			return batch.OpenCSV(data, cols, m.Info().Schema, batch.ReadOptions{})
		},
	})
	if err != nil {
		return err
	}
	took := time.Since(t1)
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return err
	}
	fmt.Printf("%s\t%d\t%d\t%.2f\t%.2f\t%.0f\t%.0f\n", m.Info().Format, res.Rows, res.Chunks, hashed.Seconds(), took.Seconds(),
		float64(res.Rows)/took.Seconds(), float64(ru.Maxrss)/1024)
	return nil
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
