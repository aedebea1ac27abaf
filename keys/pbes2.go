package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/asn1"
	"fmt"
)

// PKCS#8 encryption with PBES2 (RFC 8018 §6.2): PBKDF2-HMAC-SHA256 and
// AES-256-CBC, the scheme `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes.

// PBKDF2Iterations is the work factor used for new encrypted keys.
const PBKDF2Iterations = 600_000

// MaxPBKDF2Iterations bounds the work factor accepted when reading a key, so a
// crafted key file cannot make loading take hours.
const MaxPBKDF2Iterations = 10_000_000

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type encryptedPrivateKeyInfo struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

type pbes2Params struct {
	KeyDerivationFunc algorithmIdentifier
	EncryptionScheme  algorithmIdentifier
}

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int                 `asn1:"optional"`
	PRF            algorithmIdentifier `asn1:"optional"`
}

func encryptPKCS8(der, passphrase []byte) ([]byte, error) {
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, string(passphrase), salt, PBKDF2Iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(der)%aes.BlockSize
	plain := make([]byte, len(der)+pad)
	copy(plain, der)
	for i := len(der); i < len(plain); i++ {
		plain[i] = byte(pad)
	}
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)

	nullParams := asn1.RawValue{Tag: asn1.TagNull}
	prf := algorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: nullParams}
	kdfParams, err := asn1.Marshal(pbkdf2Params{Salt: salt, IterationCount: PBKDF2Iterations, KeyLength: 32, PRF: prf})
	if err != nil {
		return nil, err
	}
	ivBytes, err := asn1.Marshal(iv)
	if err != nil {
		return nil, err
	}
	params, err := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: algorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfParams}},
		EncryptionScheme:  algorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivBytes}},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     algorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}},
		EncryptedData: ct,
	})
}

func decryptPKCS8(der, passphrase []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: malformed EncryptedPrivateKeyInfo", ErrNotKey)
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("%w: encryption scheme %v is not PBES2", ErrUnsupportedKey, info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if rest, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: malformed PBES2 parameters", ErrNotKey)
	}
	if !params.KeyDerivationFunc.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("%w: key derivation %v is not PBKDF2", ErrUnsupportedKey, params.KeyDerivationFunc.Algorithm)
	}
	var kdf pbkdf2Params
	if rest, err := asn1.Unmarshal(params.KeyDerivationFunc.Parameters.FullBytes, &kdf); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: malformed PBKDF2 parameters", ErrNotKey)
	}
	if !kdf.PRF.Algorithm.Equal(oidHMACSHA256) {
		return nil, fmt.Errorf("%w: PBKDF2 PRF %v is not HMAC-SHA256", ErrUnsupportedKey, kdf.PRF.Algorithm)
	}
	if kdf.IterationCount < 1 || kdf.IterationCount > MaxPBKDF2Iterations {
		return nil, fmt.Errorf("%w: PBKDF2 iteration count %d outside 1..%d (MaxPBKDF2Iterations)", ErrUnsupportedKey, kdf.IterationCount, MaxPBKDF2Iterations)
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != 32 {
		return nil, fmt.Errorf("%w: PBKDF2 key length %d", ErrUnsupportedKey, kdf.KeyLength)
	}
	if !params.EncryptionScheme.Algorithm.Equal(oidAES256CBC) {
		return nil, fmt.Errorf("%w: cipher %v is not AES-256-CBC", ErrUnsupportedKey, params.EncryptionScheme.Algorithm)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(params.EncryptionScheme.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 || len(iv) != aes.BlockSize {
		return nil, fmt.Errorf("%w: malformed AES-CBC IV", ErrNotKey)
	}
	ct := info.EncryptedData
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, ErrPassphrase
	}
	key, err := pbkdf2.Key(sha256.New, string(passphrase), kdf.Salt, kdf.IterationCount, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > aes.BlockSize {
		return nil, ErrPassphrase
	}
	want := make([]byte, pad)
	for i := range want {
		want[i] = byte(pad)
	}
	if subtle.ConstantTimeCompare(plain[len(plain)-pad:], want) != 1 {
		return nil, ErrPassphrase
	}
	return plain[:len(plain)-pad], nil
}
