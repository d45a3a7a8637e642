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
	trainIdx, testIdx, err := splitIndex(d.Source, d.Schema.Label, len(d.Y), func(i int) int { return int(d.Y[i]) }, testFraction, seed)
	if err != nil {
		return nil, nil, err
	}
	return d.Subset(trainIdx), d.Subset(testIdx), nil
}

func splitIndex(source, label string, n int, class func(int) int, testFraction float64, seed uint64) (train, test []int, err error) {
	if !(testFraction > 0 && testFraction < 1) {
		return nil, nil, fmt.Errorf("dataset: split %s: test fraction %v not in (0, 1)", source, testFraction)
	}
	var classes [2][]int
	for i := range n {
		c := class(i)
		classes[c] = append(classes[c], i)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed5eed))
	for c, idx := range classes {
		k := int(math.Round(testFraction * float64(len(idx))))
		if k == 0 || k == len(idx) {
			return nil, nil, &Error{File: source, Column: label, Msg: fmt.Sprintf("class %d has %d rows: too few to split with test fraction %v", c, len(idx), testFraction)}
		}
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		test = append(test, idx[:k]...)
		train = append(train, idx[k:]...)
	}
	slices.Sort(train)
	slices.Sort(test)
	return train, test, nil
}
