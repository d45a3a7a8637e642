package dp

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
)

// cryptoSource reads crypto/rand for every draw: the direct way to make
// noise unpredictable, measured against a ChaCha8 keyed once.
type cryptoSource struct{ buf [8]byte }

func (c *cryptoSource) Uint64() uint64 {
	if _, err := crand.Read(c.buf[:]); err != nil {
		panic(err)
	}
	return binary.LittleEndian.Uint64(c.buf[:])
}

// BenchmarkNoise is the cost of one Gaussian draw, the unit of DP-SGD's
// noise (one per parameter per step), from each candidate generator.
func BenchmarkNoise(b *testing.B) {
	secure, _, err := noiseSource(false, 0)
	if err != nil {
		b.Fatal(err)
	}
	seeded, _, _ := noiseSource(true, 1)
	for _, c := range []struct {
		name string
		rng  *rand.Rand
	}{{"pcg-seeded", seeded}, {"chacha8-keyed", secure}, {"crypto-rand-per-draw", rand.New(&cryptoSource{})}} {
		b.Run(c.name, func(b *testing.B) {
			var sum float64
			for b.Loop() {
				sum += c.rng.NormFloat64()
			}
			if sum == 0.5 {
				b.Log(sum)
			}
		})
	}
}

// BenchmarkTrain is a whole DP-SGD run (MLP 16, 4000 rows, 5 epochs) with
// secure and with seeded randomness: what the secure default costs a user.
func BenchmarkTrain(b *testing.B) {
	x, y := creditRisk(b, 4000)
	cfg := model.Config{Kind: model.MLP, Seed: 2, Hidden: []int{16}}
	for _, c := range []struct {
		name     string
		insecure bool
	}{{"secure", false}, {"reproducible", true}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := Train(context.Background(), x, y, cfg, Options{Epsilon: 3, Epochs: 5, BatchSize: 200, InsecureReproducible: c.insecure}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
