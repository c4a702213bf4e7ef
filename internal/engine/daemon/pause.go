package daemon

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth/berth/internal/engine/image"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
)

// PauseImage is the engine's built-in sandbox image: one layer holding the
// berth-pause binary (cmd/berth-pause) as /pause. The engine makes it on
// demand, from the binary installed next to it, when a create or a pull
// names it and it is missing, so pods need no registry. It is an ordinary image otherwise: listed, inspected,
// removed (and made again when next needed).
const PauseImage = "berth.local/pause:latest"

// isPauseImage reports whether ref names PauseImage.
func isPauseImage(ref string) bool {
	n, err := reference.Parse(ref)
	return err == nil && n.Digest() == "" && n.String() == PauseImage
}

// ensurePauseImage makes PauseImage unless it exists.
func (d *Daemon) ensurePauseImage() (*image.Image, error) {
	d.pauseMu.Lock()
	defer d.pauseMu.Unlock()
	if img, err := d.images.Get(PauseImage); err == nil {
		return img, nil
	}
	bin, err := os.ReadFile(d.cfg.PausePath)
	if err != nil {
		return nil, fmt.Errorf("making %s from %s: %v (build it with `make build`, or pass --pause-binary): %w", PauseImage, d.cfg.PausePath, err, errdefs.ErrUnavailable)
	}
	if err := checkStatic(bin); err != nil {
		return nil, fmt.Errorf("making %s from %s: %w", PauseImage, d.cfg.PausePath, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	st, _ := os.Stat(d.cfg.PausePath)
	hdr := &tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if st != nil {
		hdr.ModTime = st.ModTime().UTC()
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	img, err := d.images.Import(&buf, PauseImage, ocispec.ImageConfig{
		Entrypoint: []string{"/pause"},
		StopSignal: "SIGTERM",
		Labels:     map[string]string{"io.berth.image": "pause"},
	})
	if err != nil {
		return nil, fmt.Errorf("making %s: %w", PauseImage, err)
	}
	d.log.Info("made the built-in pause image", "image", PauseImage, "id", img.ID, "size", len(bin))
	d.events.publish("image", "import", img.ID, map[string]string{"name": PauseImage})
	return img, nil
}

// checkStatic refuses a dynamically linked binary: /pause runs in an image
// with no libc.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %v: %w", err, errdefs.ErrUnavailable)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("it is dynamically linked (build it with CGO_ENABLED=0, as `make build` does): %w", errdefs.ErrUnavailable)
		}
	}
	return nil
}
