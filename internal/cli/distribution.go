package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/engine/reference"
	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

// distributionCommands are pull, push, login and logout.
func distributionCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{newPullCmd(g), newPushCmd(g), newLoginCmd(g), newLogoutCmd(g)}
}

// dockerHubServer is the key Docker (and berth) stores Docker Hub
// credentials under.
const dockerHubServer = "https://index.docker.io/v1/"

// configPath is the CLI's config file: $BERTH_CONFIG/config.json, or
// ~/.berth/config.json.
func configPath() string {
	if d := os.Getenv("BERTH_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".berth", "config.json")
}

// authEntry is one registry's credentials in the config file, as Docker
// keeps them: "auth" is base64("user:password").
type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// cliConfig is the config file; keys berth does not know are kept.
type cliConfig struct {
	path  string
	other map[string]json.RawMessage
	Auths map[string]authEntry
}

func loadCLIConfig() (*cliConfig, error) {
	c := &cliConfig{path: configPath(), other: map[string]json.RawMessage{}, Auths: map[string]authEntry{}}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &c.other); err != nil {
		return nil, fmt.Errorf("config file %s: invalid JSON: %v (fix or remove it)", c.path, err)
	}
	if raw, ok := c.other["auths"]; ok {
		if err := json.Unmarshal(raw, &c.Auths); err != nil {
			return nil, fmt.Errorf("config file %s: \"auths\": %v (fix or remove it)", c.path, err)
		}
	}
	return c, nil
}

// save writes the file atomically, readable by its owner only.
func (c *cliConfig) save() error {
	auths, err := json.Marshal(c.Auths)
	if err != nil {
		return err
	}
	c.other["auths"] = auths
	b, err := json.MarshalIndent(c.other, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".config.json.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), c.path)
}

// registryDomain turns a server address as users type it into the
// registry domain references use ("docker.io", "127.0.0.1:5000").
func registryDomain(server string) string {
	s := strings.TrimSpace(server)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	switch strings.ToLower(s) {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return reference.DefaultDomain
	}
	return s
}

// serverKey is the config key for a registry domain.
func serverKey(domain string) string {
	if domain == reference.DefaultDomain {
		return dockerHubServer
	}
	return domain
}

// find returns the credentials stored for domain and their key.
func (c *cliConfig) find(domain string) (string, authEntry, bool) {
	if e, ok := c.Auths[serverKey(domain)]; ok {
		return serverKey(domain), e, true
	}
	keys := make([]string, 0, len(c.Auths))
	for k := range c.Auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if registryDomain(k) == domain {
			return k, c.Auths[k], true
		}
	}
	return "", authEntry{}, false
}

// authFor returns the credentials to send for a registry domain (empty
// when none are stored).
func authFor(domain string) (api.AuthConfig, error) {
	a := api.AuthConfig{ServerAddress: serverKey(domain)}
	cfg, err := loadCLIConfig()
	if err != nil {
		return a, err
	}
	_, e, ok := cfg.find(domain)
	if !ok {
		return a, nil
	}
	if e.IdentityToken != "" {
		a.IdentityToken = e.IdentityToken
	}
	if e.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return a, fmt.Errorf("config file %s: the credentials for %s are not base64 (log in again)", cfg.path, domain)
		}
		a.Username, a.Password, _ = strings.Cut(string(b), ":")
	}
	return a, nil
}

// registryAuthHeader encodes credentials for X-Registry-Auth.
func registryAuthHeader(a api.AuthConfig) http.Header {
	b, _ := json.Marshal(a)
	return http.Header{"X-Registry-Auth": {base64.URLEncoding.EncodeToString(b)}}
}

// isTerminal reports whether w is a terminal, and its width.
func isTerminal(w io.Writer) (bool, int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		width = 80
	}
	return true, width
}

// displayProgress prints a pull or push progress stream as Docker's CLI
// does: on a terminal one line per layer, redrawn in place (cursor up,
// clear line); otherwise one line per step, without byte counts. It
// returns the push results (aux messages) and the stream's error.
func displayProgress(out io.Writer, r io.Reader) ([]api.PushResult, error) {
	tty, width := isTerminal(out)
	dec := json.NewDecoder(r)
	var results []api.PushResult
	rows := map[string]int{} // layer ID → row, counted from the first layer line
	nrows := 0
	for {
		var m struct {
			api.JSONMessage
			Aux json.RawMessage `json:"aux,omitempty"`
		}
		if err := dec.Decode(&m); err != nil {
			if err == io.EOF {
				return results, nil
			}
			return results, fmt.Errorf("reading the daemon's progress stream: %v", err)
		}
		if m.Error != "" {
			var class error
			if m.ErrorDetail != nil {
				class = errdefs.FromKind(m.ErrorDetail.Kind)
			}
			return results, &streamError{msg: m.Error, class: class}
		}
		if len(m.Aux) > 0 {
			var pr api.PushResult
			if json.Unmarshal(m.Aux, &pr) == nil && pr.Digest != "" {
				results = append(results, pr)
			}
			continue
		}
		if m.ID != "" && m.ProgressDetail != nil {
			// A layer's line.
			text := m.ID + ": " + m.Status
			if m.Progress != "" || m.ProgressDetail.Total > 0 {
				if !tty {
					continue // byte counts only make sense redrawn in place
				}
				if m.ProgressDetail.Total > 0 {
					text += " " + progressText(m.ProgressDetail.Current, m.ProgressDetail.Total, width)
				} else {
					text += " " + m.Progress
				}
			}
			if !tty {
				fmt.Fprintln(out, text)
				continue
			}
			if len(text) > width-1 {
				text = text[:width-1]
			}
			row, ok := rows[m.ID]
			if !ok {
				rows[m.ID] = nrows
				nrows++
				fmt.Fprintf(out, "\x1b[2K\r%s\n", text)
				continue
			}
			up := nrows - row
			fmt.Fprintf(out, "\x1b[%dA\x1b[2K\r%s\x1b[%dB\r", up, text, up)
			continue
		}
		// Any other line ends the block of layer lines.
		rows, nrows = map[string]int{}, 0
		switch {
		case m.Stream != "":
			fmt.Fprint(out, m.Stream)
		case m.ID != "":
			fmt.Fprintf(out, "%s: %s\n", m.ID, m.Status)
		case m.Status != "":
			fmt.Fprintln(out, m.Status)
		}
	}
}

// progressText renders byte progress for a terminal width columns wide:
// a 50-column bar when there is room, and the counts.
func progressText(cur, total int64, width int) string {
	counts := fmt.Sprintf("%8s/%s", units.HumanSize(cur), units.HumanSize(total))
	if width <= 110 {
		return counts
	}
	n := int(cur * 50 / total)
	n = max(0, min(n, 50))
	return "[" + strings.Repeat("=", n) + ">" + strings.Repeat(" ", 50-n) + "] " + counts
}

// streamError is an error the daemon sent in a progress stream; its
// class came along as the errorDetail's kind.
type streamError struct {
	msg   string
	class error
}

func (e *streamError) Error() string { return e.msg }
func (e *streamError) Unwrap() error { return e.class }

// pullImage asks the daemon to pull ref and prints its progress to out
// (nothing when quiet).
func pullImage(ctx context.Context, cl *client.Client, ref reference.Named, platform string, out io.Writer, quiet bool) error {
	auth, err := authFor(ref.Domain())
	if err != nil {
		return err
	}
	q := url.Values{"fromImage": {ref.Name()}}
	switch {
	case ref.Digest() != "":
		q.Set("tag", ref.Digest().String())
	case ref.Tag() != "":
		q.Set("tag", ref.Tag())
	}
	if platform != "" {
		q.Set("platform", platform)
	}
	resp, err := cl.DoHeader(ctx, http.MethodPost, "/images/create", q, registryAuthHeader(auth), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if quiet {
		out = io.Discard
	}
	_, err = displayProgress(out, resp.Body)
	return err
}

func newPullCmd(g *globals) *cobra.Command {
	var quiet bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Long: `Download an image from a registry. NAME follows Docker's rules: busybox means
docker.io/library/busybox:latest; a first component with a dot or a port
(127.0.0.1:5000/app) names the registry. Credentials come from 'berth login'.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := reference.Parse(args[0])
			if err != nil {
				return err
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			if err := pullImage(cmd.Context(), cl, ref, platform, g.out, quiet); err != nil {
				return err
			}
			fmt.Fprintln(g.out, ref.String())
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable (os/arch[/variant], e.g. linux/arm64)")
	return cmd
}

func newPushCmd(g *globals) *cobra.Command {
	var quiet, allTags bool
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Long: `Upload an image to a registry. Tag it first with the registry's name
(berth tag busybox 127.0.0.1:5000/busybox). Without a tag, 'latest' is pushed;
-a pushes every tag of the repository.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := reference.ParseNamed(args[0])
			if err != nil {
				return err
			}
			if ref.Digest() != "" {
				return &flagError{cmd: "push", err: fmt.Errorf("cannot push a digest reference %q: give NAME[:TAG]", args[0])}
			}
			if allTags && ref.Tag() != "" {
				return &flagError{cmd: "push", err: fmt.Errorf("tag can't be used with --all-tags/-a")}
			}
			if ref.Tag() == "" && !allTags {
				if !quiet {
					fmt.Fprintln(g.out, "Using default tag: latest")
				}
				ref, _ = ref.WithTag(reference.DefaultTag)
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			auth, err := authFor(ref.Domain())
			if err != nil {
				return err
			}
			q := url.Values{}
			if ref.Tag() != "" {
				q.Set("tag", ref.Tag())
			}
			resp, err := cl.DoHeader(cmd.Context(), http.MethodPost, "/images/"+ref.FamiliarName()+"/push", q, registryAuthHeader(auth), nil, "")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			out := g.out
			if quiet {
				out = io.Discard
			}
			if _, err := displayProgress(out, resp.Body); err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(g.out, ref.String())
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().BoolVarP(&allTags, "all-tags", "a", false, "Push all tags of the repository")
	return cmd
}

func newLoginCmd(g *globals) *cobra.Command {
	var username, password string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry",
		Long: `Log in to a registry (Docker Hub when SERVER is omitted). The daemon checks the
credentials against the registry; they are then kept in $BERTH_CONFIG/config.json
(default ~/.berth/config.json, mode 0600) and sent with pull and push.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &flagError{cmd: "login", err: fmt.Errorf("\"berth login\" requires at most 1 argument\nUsage: %s", cmd.UseLine())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			domain := registryDomain(server)
			key := serverKey(domain)
			if server != "" && domain != reference.DefaultDomain {
				key = domain
			}
			if password != "" {
				fmt.Fprintln(g.err, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
				if passwordStdin {
					return &flagError{cmd: "login", err: errors.New("--password and --password-stdin are mutually exclusive")}
				}
			}
			if passwordStdin {
				if username == "" {
					return &flagError{cmd: "login", err: errors.New("must provide --username with --password-stdin")}
				}
				b, err := io.ReadAll(g.in)
				if err != nil {
					return err
				}
				password = strings.TrimRight(string(b), "\r\n")
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			cfg, err := loadCLIConfig()
			if err != nil {
				return err
			}
			// With no credentials given, try the stored ones first.
			if username == "" && password == "" {
				if stored, err := authFor(domain); err == nil && (stored.Username != "" || stored.IdentityToken != "") {
					stored.ServerAddress = key
					var res api.AuthResponse
					if err := cl.JSON(cmd.Context(), http.MethodPost, "/auth", nil, stored, &res); err == nil {
						fmt.Fprintln(g.out, "Authenticating with existing credentials...")
						fmt.Fprintln(g.out, "Login Succeeded")
						return nil
					}
				}
			}
			in, interactive := g.in.(*os.File)
			interactive = interactive && term.IsTerminal(int(in.Fd()))
			if username == "" {
				if !interactive {
					return errors.New("Cannot perform an interactive login from a non TTY device (give -u USER and --password-stdin)")
				}
				fmt.Fprint(g.out, "Username: ")
				line, err := bufio.NewReader(in).ReadString('\n')
				if err != nil && line == "" {
					return err
				}
				username = strings.TrimSpace(line)
				if username == "" {
					return errors.New("Error: Non-null Username Required")
				}
			}
			if password == "" {
				if !interactive {
					return errors.New("Cannot perform an interactive login from a non TTY device (give --password-stdin)")
				}
				fmt.Fprint(g.out, "Password: ")
				b, err := term.ReadPassword(int(in.Fd()))
				fmt.Fprintln(g.out)
				if err != nil {
					return err
				}
				password = string(b)
				if password == "" {
					return errors.New("Error: Password Required")
				}
			}
			req := api.AuthConfig{Username: username, Password: password, ServerAddress: key}
			var res api.AuthResponse
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/auth", nil, req, &res); err != nil {
				return err
			}
			e := authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(username + ":" + password))}
			if res.IdentityToken != "" {
				e = authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(username + ":")), IdentityToken: res.IdentityToken}
			}
			if old, _, ok := cfg.find(domain); ok {
				delete(cfg.Auths, old)
			}
			cfg.Auths[key] = e
			if err := cfg.save(); err != nil {
				return fmt.Errorf("storing the credentials in %s: %v", cfg.path, err)
			}
			fmt.Fprintln(g.out, "Login Succeeded")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&username, "username", "u", "", "Username")
	f.StringVarP(&password, "password", "p", "", "Password or personal access token")
	f.BoolVar(&passwordStdin, "password-stdin", false, "Take the password or token from stdin")
	return cmd
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &flagError{cmd: "logout", err: fmt.Errorf("\"berth logout\" requires at most 1 argument\nUsage: %s", cmd.UseLine())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			domain := registryDomain(server)
			cfg, err := loadCLIConfig()
			if err != nil {
				return err
			}
			key, _, ok := cfg.find(domain)
			if !ok {
				fmt.Fprintf(g.out, "Not logged in to %s\n", serverKey(domain))
				return nil
			}
			fmt.Fprintf(g.out, "Removing login credentials for %s\n", key)
			delete(cfg.Auths, key)
			return cfg.save()
		},
	}
}

// pullMissing pulls the image a create found missing, as `docker run`
// does, printing Docker's lines to out.
func pullMissing(ctx context.Context, cl *client.Client, image string, out io.Writer) error {
	ref, err := reference.Parse(image)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Unable to find image '%s' locally\n", ref.FamiliarString())
	return pullImage(ctx, cl, ref, "", out, false)
}
