package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
)

// ReadFile reads every exchange of the file at path, in order, with st's
// way of reading capture files, and hands each to each, until ctx ends
// (then it stops decoding at once and returns ctx's error). It returns the
// file's kind and, for a capture file, its source, whose counters (File,
// Engine, VNIs) are then final.
func ReadFile(ctx context.Context, path string, st Stages, each func(recording.Record)) (source.Kind, *source.CaptureSource, error) {
	kind, err := source.Detect(path)
	if err != nil {
		return "", nil, err
	}
	var src source.Source
	var capSrc *source.CaptureSource
	if kind == source.Capture {
		capSrc, err = source.OpenCapture(path, st.Sources())
		src = capSrc
	} else {
		src, _, err = source.Open(path, st.Sources())
	}
	if err != nil {
		return kind, nil, err
	}
	defer src.Close()
	for {
		if err := ctx.Err(); err != nil {
			return kind, capSrc, fmt.Errorf("interrupted: %w", err)
		}
		r, err := src.Next()
		if errors.Is(err, io.EOF) {
			return kind, capSrc, nil
		}
		if err != nil {
			return kind, capSrc, err
		}
		each(r)
	}
}
