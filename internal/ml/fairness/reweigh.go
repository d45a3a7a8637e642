package fairness

import (
	"errors"
	"fmt"
)

// Reweigh returns Kamiran & Calders' pre-processing weights,
// w(g, y) = P(g) P(y) / P(g, y), estimated from counts: each row gets
// n_g * n_y / (n * n_gy). Training with them makes the label statistically
// independent of the group in the weighted data, without touching labels
// or features. A group that holds only one label cannot be rebalanced (no
// weighting gives it the other label); its rows get weight P(y). groups may be one
// sensitive feature or IntersectionKeys.
func Reweigh(yTrue []int, groups []string) ([]float64, error) {
	n := len(yTrue)
	if n == 0 {
		return nil, errors.New("reweigh: no rows")
	}
	if len(groups) != n {
		return nil, fmt.Errorf("reweigh: groups have %d rows, y_true %d", len(groups), n)
	}
	if err := checkBinary("y_true", yTrue); err != nil {
		return nil, fmt.Errorf("reweigh: %w", err)
	}
	type cell struct {
		g string
		y int
	}
	ng := map[string]float64{}
	var ny [2]float64
	ngy := map[cell]float64{}
	for i, y := range yTrue {
		ng[groups[i]]++
		ny[y]++
		ngy[cell{groups[i], y}]++
	}
	w := make([]float64, n)
	for i, y := range yTrue {
		// n_gy >= 1 because row i itself is in that cell.
		w[i] = ng[groups[i]] * ny[y] / (float64(n) * ngy[cell{groups[i], y}])
	}
	return w, nil
}
