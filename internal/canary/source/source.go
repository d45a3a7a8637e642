package source

import (
	"fmt"
	"strconv"

	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// Source names the metrics a provider reads and the label that tells the
// variants apart. Requests is a counter labelled with Label and "code";
// Latency and Scores are histograms labelled with Label (any other labels
// are summed over).
type Source struct {
	Requests string `json:"requests"`
	Latency  string `json:"latency"`
	// Scores is empty when the source has no score histogram.
	Scores string `json:"scores,omitempty"`
	Label  string `json:"label"`
}

func (src Source) validate() error {
	if src.Requests == "" || src.Latency == "" || src.Label == "" {
		return fmt.Errorf("canary: source %+v: requests, latency and label must be named", src)
	}
	return nil
}

// RouterSource reads the router's metrics, by variant name. The router sees
// traffic the model servers cannot count (a 502 when an upstream is down or
// too slow) but no scores: a score_shift check measured through it alone is
// inconclusive, so take Scores from a ServingSource measurement.
var RouterSource = Source{Requests: router.MetricRequests, Latency: router.MetricLatency, Label: "variant"}

// ServingSource reads the model servers' metrics, by model version.
var ServingSource = Source{Requests: serving.MetricRequests, Latency: serving.MetricLatency, Scores: serving.MetricScore, Label: "version"}

// isError reads a status code label; anything but 2xx is an error (see the
// package doc for why 4xx count), and so is a code that is not a number,
// so that a failure is never hidden by its spelling.
func isError(code string) bool {
	c, err := strconv.Atoi(code)
	return err != nil || c < 200 || c > 299
}
