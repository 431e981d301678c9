// The SHA-256 behind params_sha256: FIPS 180-4 known answers (empty, one
// block, the two-block padding case, a million bytes fed in uneven pieces).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <distributed/sha256.hpp>

using chimera::runtime::sha256;

TEST_CASE("sha256: FIPS 180-4 known answers") {
    CHECK(sha256().update(std::string()).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256().update(std::string("abc")).hex() ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256().update(std::string("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")).hex() ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sha256 million;
    const std::string piece(997, 'a');
    std::size_t fed = 0;
    for (; fed + piece.size() <= 1000000; fed += piece.size()) million.update(piece);
    million.update(std::string(1000000 - fed, 'a'));
    CHECK(million.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: a vector's digest is the digest of its bytes; one changed bit changes it") {
    std::vector<float> values{1.0f, 2.0f, 3.0f};
    const std::string bytes(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    CHECK(chimera::runtime::sha256_hex(values) == sha256().update(bytes).hex());
    const std::string before = chimera::runtime::sha256_hex(values);
    values[1] = std::nextafter(values[1], 3.0f);
    CHECK(chimera::runtime::sha256_hex(values) != before);
}
