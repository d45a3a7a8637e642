// Package matrix holds the float32 dense matrix that large data sets are
// encoded into: half the memory of gonum's float64 mat.Dense, for feature
// values that float32 represents to well within their measurement error.
// Arithmetic on it (training, scoring) accumulates in float64.
package matrix

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// Dense32 is a row-major float32 matrix.
type Dense32 struct {
	rows, cols int
	data       []float32
}

// NewDense32 returns a rows×cols matrix backed by data, or by a new zeroed
// slice when data is nil.
func NewDense32(rows, cols int, data []float32) *Dense32 {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("matrix: negative dimensions %d×%d", rows, cols))
	}
	if data == nil {
		data = make([]float32, rows*cols)
	}
	if len(data) != rows*cols {
		panic(fmt.Sprintf("matrix: %d values for a %d×%d matrix", len(data), rows, cols))
	}
	return &Dense32{rows: rows, cols: cols, data: data}
}

// Dims returns the number of rows and columns.
func (m *Dense32) Dims() (rows, cols int) { return m.rows, m.cols }

// Row returns row i, sharing the matrix's storage.
func (m *Dense32) Row(i int) []float32 { return m.data[i*m.cols : (i+1)*m.cols : (i+1)*m.cols] }

// Raw returns the row-major backing slice.
func (m *Dense32) Raw() []float32 { return m.data }

// At returns element (i, j).
func (m *Dense32) At(i, j int) float32 {
	if j < 0 || j >= m.cols {
		panic(fmt.Sprintf("matrix: column %d out of range [0, %d)", j, m.cols))
	}
	return m.data[i*m.cols+j]
}

// Float64 copies the matrix into a gonum float64 matrix, for code that
// works on those (DP-SGD's per-example gradients, small data).
func (m *Dense32) Float64() *mat.Dense {
	out := mat.NewDense(m.rows, m.cols, nil)
	raw := out.RawMatrix()
	for i := range m.rows {
		dst := raw.Data[i*raw.Stride : i*raw.Stride+m.cols]
		for j, v := range m.Row(i) {
			dst[j] = float64(v)
		}
	}
	return out
}
