package registry

import (
	"net/http"
	"os"
	"time"
)

func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, name, ref string) error {
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	if !exists(r.st.layerLink(name, d)) {
		return newErr(errBlobUnknown, "blob %s is not in repository %s", d, name).withDetail(map[string]string{"digest": d.String()})
	}
	f, err := os.Open(r.st.blobPath(d))
	if os.IsNotExist(err) {
		return newErr(errBlobUnknown, "blob %s is not in repository %s", d, name).withDetail(map[string]string{"digest": d.String()})
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	// ServeContent answers HEAD and Range requests; a full GET goes out
	// through the connection's ReadFrom, which is sendfile for plain TCP.
	http.ServeContent(w, req, "", time.Time{}, f)
	return nil
}

func (r *Registry) deleteBlob(w http.ResponseWriter, req *http.Request, name, ref string) error {
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	link := r.st.layerLink(name, d)
	if err := os.Remove(link); err != nil {
		if os.IsNotExist(err) {
			return newErr(errBlobUnknown, "blob %s is not in repository %s", d, name).withDetail(map[string]string{"digest": d.String()})
		}
		return err
	}
	// The content stays under blobs/ until `berth registry gc` finds no
	// manifest referencing it.
	w.Header().Set("Content-Length", "0")
	w.Header().Set("Docker-Content-Digest", d.String())
	w.WriteHeader(http.StatusAccepted)
	return nil
}
