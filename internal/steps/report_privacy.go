package steps

import (
	"fmt"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dp"
)

// privacyRecord reads back the DP guarantee train recorded in m's manifest
// (models derived from it keep the record); nil for a model without one.
func privacyRecord(m *loadedModel) (*dp.Guarantee, error) {
	rec, ok := m.Info().Lineage.Params[paramPrivacy]
	if !ok {
		return nil, nil
	}
	var g dp.Guarantee
	if err := remarshal(rec, &g); err != nil {
		return nil, fmt.Errorf("model %s: manifest's %s: %w", m.Name, paramPrivacy, err)
	}
	return &g, nil
}
