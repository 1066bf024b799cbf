#include "test_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace mend::testing {
namespace {

[[noreturn]] void fail(const std::string& doing) {
  char reason[256] = "unknown reason";
  unsigned long code = ERR_get_error();
  if (code != 0) ERR_error_string_n(code, reason, sizeof reason);
  ERR_clear_error();
  throw std::runtime_error("test certificates: " + doing + " failed: " + reason);
}

struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertDeleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyDeleter>;
using Cert = std::unique_ptr<X509, CertDeleter>;
using Bio = std::unique_ptr<BIO, BioDeleter>;

Key new_key() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) fail("generating an EC key");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) fail(std::string("building extension ") + OBJ_nid2sn(nid));
  int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (added != 1) fail(std::string("adding extension ") + OBJ_nid2sn(nid));
}

// A certificate for `key` named `common_name`; self-signed when issuer is null.
Cert new_certificate(EVP_PKEY* key, const char* common_name, long serial, X509* issuer,
                     EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (!cert) fail("allocating a certificate");
  X509* x = cert.get();
  X509_set_version(x, 2);  // v3
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
  if (X509_set_pubkey(x, key) != 1) fail("setting the public key");
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("mend tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : x;
  X509_set_issuer_name(x, X509_get_subject_name(signer));
  add_extension(x, signer, NID_subject_key_identifier, "hash");
  if (issuer == nullptr) {
    add_extension(x, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(x, signer, NID_authority_key_identifier, "keyid:always");
    add_extension(x, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(x, signer, NID_key_usage, "critical,digitalSignature");
    add_extension(x, signer, NID_ext_key_usage, "serverAuth");
    add_extension(x, signer, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost");
  }
  if (X509_sign(x, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) {
    fail("signing the certificate");
  }
  return cert;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::string pem_of_certificate(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) fail("writing a certificate as PEM");
  return bio_text(bio.get());
}

std::string pem_of_key(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    fail("writing a private key as PEM");
  }
  return bio_text(bio.get());
}

std::string write_temporary_file(const std::string& contents) {
  const char* dir = std::getenv("TMPDIR");
  std::string pattern =
      std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/mend-test-ca-XXXXXX";
  std::vector<char> path(pattern.begin(), pattern.end());
  path.push_back('\0');
  int fd = ::mkstemp(path.data());
  if (fd < 0) throw std::runtime_error("test certificates: cannot create " + pattern);
  std::size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n <= 0) {
      ::close(fd);
      ::unlink(path.data());
      throw std::runtime_error("test certificates: cannot write " + std::string(path.data()));
    }
    written += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return path.data();
}

}  // namespace

std::unique_ptr<TestCertificates> TestCertificates::generate() {
  Key ca_key = new_key();
  Cert ca = new_certificate(ca_key.get(), "mend test CA", 1, nullptr, nullptr);
  Key server_key = new_key();
  Cert server = new_certificate(server_key.get(), "localhost", 2, ca.get(), ca_key.get());

  auto certs = std::make_unique<TestCertificates>();
  certs->ca_cert_pem = pem_of_certificate(ca.get());
  certs->cert_pem = pem_of_certificate(server.get());
  certs->key_pem = pem_of_key(server_key.get());
  certs->ca_file = write_temporary_file(certs->ca_cert_pem);
  return certs;
}

TestCertificates::~TestCertificates() {
  if (!ca_file.empty()) ::unlink(ca_file.c_str());
}

}  // namespace mend::testing
