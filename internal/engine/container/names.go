package container

import (
	"fmt"
	"math/rand/v2"

	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/lazyre"
)

var (
	adjectives = []string{"agile", "bold", "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "keen",
		"kind", "lively", "lucid", "merry", "nimble", "proud", "quiet", "quick", "sharp", "steady", "swift", "tidy", "vivid", "wise", "zealous"}
	nouns = []string{"anchor", "beacon", "buoy", "cargo", "compass", "current", "delta", "dock", "ferry", "harbor",
		"helm", "jetty", "keel", "lagoon", "mast", "mooring", "pier", "quay", "reef", "rudder", "sail", "skiff", "tide", "wharf", "yawl"}
)

// validName is Docker's rule for container names.
var validName = lazyre.New(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidateName checks a user-given container name.
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// GenerateName returns an unused random name such as "swift_harbor".
func (s *Store) GenerateName() string {
	for i := 0; ; i++ {
		n := adjectives[rand.IntN(len(adjectives))] + "_" + nouns[rand.IntN(len(nouns))]
		if i > 10 {
			n = fmt.Sprintf("%s%d", n, rand.IntN(100))
		}
		if !s.NameTaken(n) {
			return n
		}
	}
}
