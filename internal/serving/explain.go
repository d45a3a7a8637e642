package serving

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// POST /v1/explain takes the body /v1/predict takes and answers, per record,
// the score and label /v1/predict would give and each input column's
// contribution to the record's logit against a background sample of the
// model's held-out split (package explain: exact for a float logistic
// regression in either format, sampled Shapley values for the MLP, int8 and
// other ONNX models).

const (
	// holdoutParam is the key of modelfile.Lineage.Params under which the
	// train step records the held-out split it leaves in the model
	// directory (steps.paramHoldout; serving cannot import the steps).
	holdoutParam = "holdout"
	// backgroundRows bounds the background sample: the linear base is its
	// mean and Shapley sampling draws from it, and a hundred rows settle
	// both while keeping a model load cheap.
	backgroundRows = 100
	// explainSeed fixes the Shapley sampling, so explaining a record twice
	// gives the same answer.
	explainSeed = 1
)

type holdoutRecord struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Rows   int    `json:"rows"`
}

// newExplainer builds the explainer of a loaded model, or says why it cannot.
// A model of any format can be explained; what one may lack is the held-out
// split its background is drawn from.
func newExplainer(m scoring.Model) (*explain.Model, error) {
	bg, err := loadBackground(m)
	if err != nil {
		return nil, err
	}
	e := explain.For(m, bg)
	e.Seed = explainSeed
	return e, nil
}

// loadBackground encodes evenly spaced rows of the model's held-out split,
// at most backgroundRows of them: the split keeps its source's row order,
// which may be sorted, so its first rows need not stand for the whole. The
// file is streamed, keeping only those rows, so a large split costs no
// memory at a swap; it is checked against the sha256 the (tamper-evident)
// manifest records.
func loadBackground(m scoring.Model) (*mat.Dense, error) {
	info := m.Info()
	raw, ok := info.Lineage.Params[holdoutParam]
	if !ok {
		return nil, errors.New("its manifest records no held-out split")
	}
	var h holdoutRecord
	b, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil || !filepath.IsLocal(h.File) || h.Rows <= 0 {
		return nil, fmt.Errorf("its manifest's %q record is malformed", holdoutParam)
	}
	f, err := os.Open(filepath.Join(info.Dir, h.File))
	if err != nil {
		return nil, fmt.Errorf("held-out split: %w", err)
	}
	defer f.Close()
	sum := sha256.New()
	// Parsed as dataset.Read parses, so the rows counted are the rows it
	// would load.
	cr := csv.NewReader(io.TeeReader(f, sum))
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	cr.Comment = '|'
	cr.ReuseRecord = true
	var kept bytes.Buffer
	cw := csv.NewWriter(&kept)
	k := min(backgroundRows, h.Rows)
	next, row := 0, -1 // row -1 is the header
	for ; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("held-out split %s: %w", h.File, err)
		}
		if row >= 0 {
			if next == k || row != next*h.Rows/k {
				continue
			}
			next++
		}
		if err := cw.Write(rec); err != nil {
			return nil, err
		}
	}
	cw.Flush()
	if got := hex.EncodeToString(sum.Sum(nil)); got != h.SHA256 {
		return nil, fmt.Errorf("held-out split %s does not match the sha256 its manifest records: %w", h.File, modelfile.ErrTampered)
	}
	if row != h.Rows {
		return nil, fmt.Errorf("held-out split %s has %d rows, its manifest records %d", h.File, row, h.Rows)
	}
	d, err := dataset.Read(&kept, h.File, dataset.WithSchema(info.Schema), dataset.WithHeader(true))
	if err != nil {
		return nil, fmt.Errorf("held-out split: %w", err)
	}
	x, err := m.Encode(d)
	if err != nil {
		return nil, fmt.Errorf("held-out split: %w", err)
	}
	return x, nil
}

type explainResponse struct {
	Model        modelRef      `json:"model"`
	Explanations []explanation `json:"explanations"`
}

type modelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

type explanation struct {
	Score float64 `json:"score"`
	Label string  `json:"label"`
	// Attributions are sorted by |value|, largest first, so a client can
	// cut the list at the columns that matter.
	Attributions []explain.Attribution `json:"attributions"`
}

// serveExplain is /v1/explain. It leaves the request metrics alone: they are
// labelled by version and code only, and the canary analysis reads them as
// prediction traffic, which explanations' latency would distort.
func (s *Server) serveExplain(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, 405, "use POST")
		return
	}
	m := s.acquire()
	if m == nil {
		writeError(w, 503, "shutting down")
		return
	}
	defer m.release()
	if m.explainErr != nil {
		writeError(w, 501, fmt.Sprintf("model %s %s cannot be explained: %v. Logistic regression, MLP and int8 models are all "+
			"explainable, in Gauntlet's format or ONNX, when their directory holds the held-out split the train step records",
			m.Ref.Name, m.Ref.Version, m.explainErr))
		return
	}
	// Explanations share the predictions' bound on concurrent requests, so
	// the two together cannot overload the server.
	if n := s.inFlight.Add(1); n > int64(s.opts.MaxInFlight) {
		s.inFlight.Add(-1)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.opts.RetryAfter.Seconds()))))
		writeError(w, 429, fmt.Sprintf("overloaded: %d requests in flight", s.opts.MaxInFlight))
		return
	}
	defer s.inFlight.Add(-1)

	body, rerr := s.readBody(r, nil)
	if rerr != nil {
		writeError(w, rerr.status, rerr.msg)
		return
	}
	b := m.getBatch()
	defer m.putBatch(b)
	if err := decodeRequest(body, m, b, s.opts.MaxExplainRecords); err != nil {
		var re *requestError
		switch {
		case errors.As(err, &re) && re.status == 413:
			// The decoder answers 413 only for the record count.
			writeError(w, 413, fmt.Sprintf("more than %d records in one request: /v1/explain takes at most %d, since each "+
				"record's attributions cost hundreds of model evaluations", s.opts.MaxExplainRecords, s.opts.MaxExplainRecords))
		case errors.As(err, &re):
			writeError(w, re.status, re.msg)
		default:
			writeError(w, 400, err.Error())
		}
		return
	}
	if err := m.score(b); err != nil {
		writeError(w, 500, "score: "+err.Error())
		return
	}
	resp := explainResponse{
		Model:        modelRef{Name: m.Ref.Name, Version: m.Ref.Version, Digest: m.Digest},
		Explanations: make([]explanation, b.n),
	}
	// Attributions explain the very rows just scored, so they add up to the
	// scores answered.
	width := m.enc.Width()
	for i := range b.n {
		if r.Context().Err() != nil {
			// The client is gone; the rest of the work would be wasted.
			return
		}
		attr, err := m.explainer.AttributeRow(b.x[i*width : (i+1)*width])
		if err != nil {
			writeError(w, 500, fmt.Sprintf("record %d: %v", i, err))
			return
		}
		slices.SortStableFunc(attr, func(x, y explain.Attribution) int {
			return cmp.Compare(math.Abs(y.Value), math.Abs(x.Value))
		})
		label := m.negLabel
		if m.positive(b, i) {
			label = m.posLabel
		}
		resp.Explanations[i] = explanation{Score: b.scores[i], Label: unquote(label), Attributions: attr}
	}
	writeJSON(w, 200, resp)
}
