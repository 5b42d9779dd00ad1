package slave

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/anthill-project/anthill/protocol"
)

// A master that enrolls a slave (open enrollment, an invitation, the admin
// token) gives it its own identity token in the Welcome. The slave
// presents that token from then on, and keeps it in Options.State so a
// restart is the same volunteer rather than a new one.

// identityFile is what the state directory keeps for one master.
type identityFile struct {
	Master    string `json:"master"`    // the slave endpoint's URL
	Volunteer string `json:"volunteer"` // the identity's name, for people reading the file
	Token     string `json:"token"`
	// Via is the SHA-256 of the --token that obtained the identity (an
	// invitation), or "". The kept token is used when the slave is started
	// again with that same --token or none; another --token is another
	// credential and wins.
	Via string `json:"via,omitempty"`
}

// statePath is the file of the master at url in dir: one per master, so a
// volunteer donating to several keeps an identity with each.
func statePath(dir, url string) string {
	h := sha256.Sum256([]byte(url))
	return filepath.Join(dir, "identity-"+hex.EncodeToString(h[:8])+".json")
}

func viaOf(token string) string {
	if token == "" {
		return ""
	}
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// loadToken returns the token to present: the one kept in the state
// directory for this master, unless Options.Token names another
// credential.
func loadToken(o *Options, url string) (string, error) {
	if o.State == "" {
		return o.Token, nil
	}
	path := statePath(o.State, url)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return o.Token, nil
	}
	if err != nil {
		return "", fmt.Errorf("slave: state: %w", err)
	}
	var f identityFile
	if err := json.Unmarshal(b, &f); err != nil || f.Token == "" {
		return "", fmt.Errorf("slave: state file %s is damaged (delete it to enroll again): %v", path, err)
	}
	if f.Master != url || (o.Token != "" && viaOf(o.Token) != f.Via) {
		return o.Token, nil
	}
	return f.Token, nil
}

// adopt takes the identity token a Welcome issued: presented from now on,
// and kept in the state directory if there is one.
func (s *Slave) adopt(w *protocol.Welcome) {
	if w.VolunteerToken == "" {
		return
	}
	s.token = w.VolunteerToken
	if s.modules != nil {
		s.modules.setToken(w.VolunteerToken)
	}
	if s.opts.State == "" {
		s.log.Info("enrolled by the master; the identity lasts while this process runs", "volunteer", w.Volunteer)
		return
	}
	path := statePath(s.opts.State, s.url)
	f := identityFile{Master: s.url, Volunteer: w.Volunteer, Token: w.VolunteerToken, Via: viaOf(s.opts.Token)}
	if err := writeState(path, &f); err != nil {
		s.log.Error("cannot keep the identity the master issued; a restart will enroll anew", "volunteer", w.Volunteer, "err", err)
		return
	}
	s.log.Info("enrolled by the master; identity kept", "volunteer", w.Volunteer, "file", path)
}

// writeState writes f atomically, readable by its owner only: the token is
// the volunteer's credential.
func writeState(path string, f *identityFile) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".identity-*.tmp") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
