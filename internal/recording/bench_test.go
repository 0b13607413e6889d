package recording

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkReader reads a recording of 1000 records (the samples, most of
// them compressed) back, and reports the cost of one record.
func BenchmarkReader(b *testing.B) {
	recs := sampleRecords()
	var many []Record
	for range 50 {
		many = append(many, recs...)
	}
	file := encodeFile(many...)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		rd, err := NewReader(io.NopCloser(bytes.NewReader(file)), "bench")
		if err != nil {
			b.Fatal(err)
		}
		got, err := readRest(rd)
		if err != nil || len(got) != len(many) {
			b.Fatalf("%d records, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(many)), "ns/record")
}
