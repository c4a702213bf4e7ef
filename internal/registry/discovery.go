package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// paginate applies the spec's ?n= and ?last= to a sorted list and returns
// the page and, if more follow, the Link header for the next page.
func paginate(all []string, q url.Values, path string) ([]string, string, error) {
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(all, last)
		if i < len(all) && all[i] == last {
			i++
		}
		all = all[i:]
	}
	ns := q.Get("n")
	if ns == "" {
		return all, "", nil
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 0 {
		return nil, "", newErr(errPaginationInvalid, "invalid page size n=%q: want a non-negative integer", ns)
	}
	if n >= len(all) {
		return all, "", nil
	}
	page := all[:n]
	if n == 0 {
		return page, "", nil
	}
	next := url.Values{"n": {ns}, "last": {page[n-1]}}
	return page, fmt.Sprintf(`<%s?%s>; rel="next"`, path, next.Encode()), nil
}

func writeJSON(w http.ResponseWriter, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}

func (r *Registry) getTags(w http.ResponseWriter, req *http.Request, name string) error {
	if !r.st.repoExists(name) {
		return newErr(errNameUnknown, "repository %s is not known to this registry", name).withDetail(map[string]string{"name": name})
	}
	all, err := r.st.tags(name)
	if err != nil {
		return err
	}
	page, link, err := paginate(all, req.URL.Query(), "/v2/"+name+"/tags/list")
	if err != nil {
		return err
	}
	if link != "" {
		w.Header().Set("Link", link)
	}
	return writeJSON(w, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, page})
}

func (r *Registry) getCatalog(w http.ResponseWriter, req *http.Request) error {
	all, err := r.st.repositories()
	if err != nil {
		return err
	}
	if all == nil {
		all = []string{}
	}
	page, link, err := paginate(all, req.URL.Query(), "/v2/_catalog")
	if err != nil {
		return err
	}
	if link != "" {
		w.Header().Set("Link", link)
	}
	return writeJSON(w, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{page})
}

// getReferrers answers the referrers API: an image index listing the
// manifests of the repository whose subject is the given digest, filtered
// by ?artifactType=.
func (r *Registry) getReferrers(w http.ResponseWriter, req *http.Request, name, ref string) error {
	subject, err := parseDigest(ref)
	if err != nil {
		return err
	}
	filter := req.URL.Query().Get("artifactType")
	descs, err := r.referrers(name, subject)
	if err != nil {
		return err
	}
	out := make([]v1.Descriptor, 0, len(descs))
	for _, d := range descs {
		if filter == "" || d.ArtifactType == filter {
			out = append(out, d)
		}
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, mtOCIIndex, v1.Index{
		Versioned: specsVersioned2,
		MediaType: mtOCIIndex,
		Manifests: out,
	})
}

// referrers lists the descriptors of the manifests in repository name
// whose subject is subject, sorted by digest.
func (r *Registry) referrers(name string, subject digest.Digest) ([]v1.Descriptor, error) {
	dir := r.st.referrersDir(name, subject)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var d v1.Descriptor
		if json.Unmarshal(b, &d) != nil {
			r.log.Warn("skipping corrupt referrers entry", "file", filepath.Join(dir, e.Name()))
			continue
		}
		if _, ok := r.st.manifestMediaType(name, d.Digest); !ok {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}
