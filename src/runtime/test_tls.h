// Test support: a throwaway certificate authority and a server certificate it signed, generated
// at test time with OpenSSL, so that HTTPS is tested with real verification and nothing secret
// or expiring is kept in the tree.
//
//   auto certs = mend::testing::TestCertificates::generate();
//   server_options.tls_cert_pem = certs->cert_pem;
//   server_options.tls_key_pem = certs->key_pem;
//   client_options.ca_file = certs->ca_file;     // trusts the CA, and so the server
//
// The server certificate names 127.0.0.1, ::1 and localhost. Keys are ECDSA P-256 (fast to
// generate); certificates are valid from an hour ago for a day.
#ifndef MEND_SRC_RUNTIME_TEST_TLS_H_
#define MEND_SRC_RUNTIME_TEST_TLS_H_

#include <memory>
#include <string>

namespace mend::testing {

struct TestCertificates {
  std::string ca_cert_pem;  // the CA's certificate
  std::string cert_pem;     // the server's certificate, signed by the CA
  std::string key_pem;      // the server's private key (PKCS#8, unencrypted)
  std::string ca_file;      // ca_cert_pem in a temporary file, removed by the destructor

  // Throws std::runtime_error, with OpenSSL's reason, when generation fails.
  static std::unique_ptr<TestCertificates> generate();

  TestCertificates() = default;
  TestCertificates(const TestCertificates&) = delete;
  TestCertificates& operator=(const TestCertificates&) = delete;
  ~TestCertificates();
};

}  // namespace mend::testing

#endif  // MEND_SRC_RUNTIME_TEST_TLS_H_
