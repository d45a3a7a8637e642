package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Split cuts d into train and test parts, stratified by label: each class
// contributes round(testFraction × its size) rows to test. The same seed
// gives the same split; rows keep their original order within each part.
func (d *Dataset) Split(testFraction float64, seed uint64) (train, test *Dataset, err error) {
	if !(testFraction > 0 && testFraction < 1) {
		return nil, nil, fmt.Errorf("dataset: split %s: test fraction %v not in (0, 1)", d.Source, testFraction)
	}
	var classes [2][]int
	for i, y := range d.Y {
		classes[int(y)] = append(classes[int(y)], i)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed5eed))
	var trainIdx, testIdx []int
	for c, idx := range classes {
		k := int(math.Round(testFraction * float64(len(idx))))
		if k == 0 || k == len(idx) {
			return nil, nil, &Error{File: d.Source, Column: d.Schema.Label, Msg: fmt.Sprintf("class %d has %d rows: too few to split with test fraction %v", c, len(idx), testFraction)}
		}
		idx = slices.Clone(idx)
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		testIdx = append(testIdx, idx[:k]...)
		trainIdx = append(trainIdx, idx[k:]...)
	}
	slices.Sort(trainIdx)
	slices.Sort(testIdx)
	return d.Subset(trainIdx), d.Subset(testIdx), nil
}
