// The command line's own helpers, linked from tools/common.cpp: the range check every numeric
// option goes through, and the one line a failure prints.
#include <doctest/doctest.h>

#include <new>
#include <stdexcept>
#include <string>

#include "tools/common.h"

TEST_CASE("the one-line error: standard-library messages get their kind and context, lines are folded") {
  using curv::cli::error_line;
  curv::cli::set_error_context("spectrum m.onnx");
  CHECK(error_line(std::bad_alloc()) == "curv: spectrum m.onnx: out of memory (std::bad_alloc)");
  CHECK(error_line(std::invalid_argument("stoll")) == "curv: spectrum m.onnx: a value is malformed (stoll)");
  CHECK(error_line(std::length_error("vector::reserve")) == "curv: spectrum m.onnx: a size is too large (vector::reserve)");
  CHECK(error_line(std::out_of_range("stoll")) == "curv: spectrum m.onnx: a value is out of range (stoll)");
  {
    curv::cli::ErrorContext reading("data/x.npz");
    CHECK(error_line(std::runtime_error("basic_string::_M_create")) ==
          "curv: data/x.npz: unexpected failure (basic_string::_M_create)");
  }
  CHECK(curv::cli::error_context() == "spectrum m.onnx");
  // Messages that say what is wrong pass unchanged, on one line.
  CHECK(error_line(std::runtime_error("m.onnx: node 'conv1': stride must be >= 1")) ==
        "curv: m.onnx: node 'conv1': stride must be >= 1");
  CHECK(error_line(std::runtime_error("HDF5 error\nmajor: file")) == "curv: HDF5 error\\x0amajor: file");
  CHECK(error_line(std::runtime_error("m.onnx: node 'a\x0b\tb\x7f'")) == "curv: m.onnx: node 'a\\x0b\\x09b\\x7f'");
  curv::cli::set_error_context("");
}

TEST_CASE("in_range: finite numbers within the bounds pass, the rest name the value and the range") {
  CLI::Validator v = curv::cli::in_range(1, 100);
  auto check = [&](std::string s) { return v(s); };
  CHECK(check("1") == "");
  CHECK(check("100") == "");
  CHECK(check("2.5") == "");
  CHECK(check("0") == "0 is outside [1, 100]");
  CHECK(check("101") == "101 is outside [1, 100]");
  CHECK(check("nan") == "nan is not a finite number");
  CHECK(check("inf") == "inf is not a finite number");
  CHECK(check("4611686018427387904") == "4611686018427387904 is outside [1, 100]");
  CHECK(check("12abc") == "'12abc' is not a number");
  CHECK(check("") == "'' is not a number");
}
