package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/recording"
)

// keyFlags name the age keys of encrypted recordings: the recipients a
// recording is written to, the identity files that read one.
type keyFlags struct {
	encryptTo, encryptToFiles, identities listFlag
}

// registerRead adds -identity, which every command reading recordings has.
func (k *keyFlags) registerRead(fs *flag.FlagSet) {
	fs.Var(&k.identities, "identity", "age identity file (as age-keygen writes it) that decrypts encrypted recordings (repeatable)")
}

// registerWrite adds the recipients' flags, which record has.
func (k *keyFlags) registerWrite(fs *flag.FlagSet) {
	fs.Var(&k.encryptTo, "encrypt-to", "encrypt the recording to this age recipient, age1... as age-keygen prints it (repeatable: any one of them can read it)")
	fs.Var(&k.encryptToFiles, "encrypt-to-file", "encrypt the recording to every age recipient in this file, one a line, # comments (repeatable)")
}

// load parses the keys named into cfg.Recordings. Its errors are bad
// usage; none repeats a private key it was given.
func (k *keyFlags) load(cfg *config.Config) error {
	var keys config.RecordingKeys
	for _, s := range k.encryptTo {
		s = strings.TrimSpace(s)
		if strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY-") {
			return errors.New("-encrypt-to: that is a private key (an identity); give its recipient, which age-keygen -y FILE prints")
		}
		r, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil || len(r) != 1 || strings.ContainsAny(s, "\r\n") {
			return fmt.Errorf("-encrypt-to %q: not an age recipient (age1..., as age-keygen prints it)", s)
		}
		keys.EncryptTo = append(keys.EncryptTo, r[0])
	}
	for _, path := range k.encryptToFiles {
		r, err := parseKeyFile(path, age.ParseRecipients)
		if err != nil {
			return fmt.Errorf("-encrypt-to-file %w", err)
		}
		keys.EncryptTo = append(keys.EncryptTo, r...)
	}
	for _, path := range k.identities {
		ids, err := parseKeyFile(path, age.ParseIdentities)
		if err != nil {
			return fmt.Errorf("-identity %w", err)
		}
		keys.Identities = append(keys.Identities, ids...)
	}
	cfg.Recordings = keys
	return nil
}

// parseKeyFile parses the file at path, one key a line, with parse.
func parseKeyFile[K any](path string, parse func(io.Reader) ([]K, error)) ([]K, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys, err := parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// checkKeys says, before anything is read or sent, which of inputs is an
// encrypted recording that ids cannot decrypt. Its error wraps
// recording.ErrEncrypted: the command exits 2, as for bad usage.
func checkKeys(inputs []string, ids []age.Identity) error {
	for _, path := range inputs {
		if !recording.IsEncrypted(path) {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		rd, err := recording.NewReader(f, path, ids...)
		if err != nil {
			return keyHint(err, ids)
		}
		rd.Close()
	}
	return nil
}

// keyHint adds to an error that a recording needs a key how to give one.
func keyHint(err error, ids []age.Identity) error {
	if errors.Is(err, recording.ErrEncrypted) && len(ids) == 0 {
		return fmt.Errorf("%w: give its key with -identity FILE (an age identity file, as age-keygen writes it)", err)
	}
	return err
}
