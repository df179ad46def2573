package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// trailerChecks use a client with TrailingHeaders, as mc and MinIO's own
// tools build one: a PUT carries its checksum after the body, aws-chunked,
// signed chunk by chunk or (with DisableContentSha256) unsigned. The object
// must arrive whole and keep the checksum.
func (e *env) trailerChecks() {
	for _, unsigned := range []bool{false, true} {
		name := "trailer/put-crc32c-signed-chunks"
		if unsigned {
			name = "trailer/put-crc32c-unsigned"
		}
		e.check(name, func(ctx context.Context) (string, error) {
			c, err := minio.New(e.endpoint, &minio.Options{
				Creds: credentials.NewStaticV4(e.access, e.secret, ""), Region: e.region, TrailingHeaders: true,
			})
			if err != nil {
				return "", err
			}
			key := e.key("trailer/%s/obj", randHex(4))
			data := randBytes(3<<20 + 5)
			_, err = c.PutObject(ctx, e.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
				Checksum: minio.ChecksumCRC32C, DisableMultipart: true, DisableContentSha256: unsigned,
			})
			if err != nil {
				return "", fmt.Errorf("put: %s", describe(err))
			}
			e.track(key)
			sum := make([]byte, 4)
			binary.BigEndian.PutUint32(sum, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
			want := base64.StdEncoding.EncodeToString(sum)
			st, err := c.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{Checksum: true})
			if err != nil {
				return "", fmt.Errorf("stat: %s", describe(err))
			}
			if st.ChecksumCRC32C != want {
				return "", fmt.Errorf("stored CRC32C %q, want %q", st.ChecksumCRC32C, want)
			}
			obj, err := c.GetObject(ctx, e.bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return "", fmt.Errorf("get: %s", describe(err))
			}
			defer obj.Close()
			got, err := io.ReadAll(obj)
			if err != nil {
				return "", fmt.Errorf("get: %s", describe(err))
			}
			if !bytes.Equal(got, data) {
				return "", fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(data))
			}
			return fmt.Sprintf("%d bytes, CRC32C %s kept", len(data), want), nil
		})
	}
}
