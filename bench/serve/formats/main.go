// Command formats is the Go side of bench/serve/formats.sh, which serves the
// UCI Adult logistic model in Gauntlet's own format and as ONNX and measures
// both with wrk.
//
//	formats prepare ADULT_DATA ADULT_TEST OUTDIR
//	    trains the logistic model on 80 % of adult.data as the train step
//	    does (label Y, sex and race sensitive, fnlwgt ignored), saves it in
//	    OUTDIR/gauntlet, exports it to OUTDIR/onnx, and prints how the two
//	    score adult.test: the largest |score difference| and label agreement.
//	formats serve MODEL_DIR ADDR
//	    serves one model as `gauntlet serve --model` does (package serving,
//	    its defaults; no polling) on ADDR until SIGTERM or SIGINT.
//
// ONNX Runtime is found through GAUNTLET_ONNXRUNTIME_LIB.
package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 5 && os.Args[1] == "prepare":
		err = prepare(os.Args[2], os.Args[3], os.Args[4])
	case len(os.Args) == 4 && os.Args[1] == "serve":
		err = serve(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("usage: formats prepare ADULT_DATA ADULT_TEST OUTDIR | formats serve MODEL_DIR ADDR")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "formats:", err)
		os.Exit(1)
	}
}

func adultOptions() []dataset.Option {
	return []dataset.Option{
		dataset.WithLabel("Y", ">50K", ">50K."),
		dataset.WithSensitive("sex", "race"),
		dataset.WithIgnored("fnlwgt"),
	}
}

func prepare(data, test, out string) error {
	d, err := dataset.Load(data, adultOptions()...)
	if err != nil {
		return err
	}
	train, _, err := d.Split(0.2, 1)
	if err != nil {
		return err
	}
	enc, err := dataset.FitEncoder(train, dataset.EncoderOptions{})
	if err != nil {
		return err
	}
	x, err := enc.Transform(train)
	if err != nil {
		return err
	}
	net, err := model.Train(context.Background(), x, train.Y, model.Config{Kind: model.LogReg})
	if err != nil {
		return err
	}
	gdir, odir := filepath.Join(out, "gauntlet"), filepath.Join(out, "onnx")
	m := &modelfile.Manifest{
		Kind: model.LogReg, Schema: d.Schema, Features: enc.FeatureNames(), Preprocessing: enc, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: d.Digest, Params: map[string]any{serving.NegativeLabelParam: "<=50K"}, CreatedAt: time.Now().UTC()},
	}
	if _, err := modelfile.Save(gdir, m, net.Tensors()); err != nil {
		return err
	}
	a, err := modelfile.Load(gdir)
	if err != nil {
		return err
	}
	if _, err := onnxmodel.Export(a, odir); err != nil {
		return err
	}
	td, err := dataset.Load(test, adultOptions()...)
	if err != nil {
		return err
	}
	var scores [2][]float64
	for i, dir := range []string{gdir, odir} {
		sm, err := scoring.Open(dir, scoring.Options{Threads: 1})
		if err != nil {
			return err
		}
		scores[i], err = scoring.ScoreDataset(sm, td)
		sm.Close()
		if err != nil {
			return err
		}
	}
	worst, same := 0.0, 0
	for r := range scores[0] {
		worst = math.Max(worst, math.Abs(scores[0][r]-scores[1][r]))
		if (scores[0][r] >= 0.5) == (scores[1][r] >= 0.5) {
			same++
		}
	}
	fmt.Printf("%d adult.test records: max |score difference| %.2e, same label %d/%d; %d features\n", len(scores[0]), worst, same, len(scores[0]), enc.Width())
	return nil
}

func serve(dir, addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := serving.New(ctx, serving.DirSource{Dir: dir}, serving.Options{PollInterval: -1})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	info := s.Model().Scoring.Info()
	fmt.Printf("serving %s (%s, %s) on %s, GOMAXPROCS %d\n", dir, info.Format, info.Provider, ln.Addr(), runtime.GOMAXPROCS(0))
	return s.Serve(ctx, ln)
}
