// The doctest main; test cases live in tests/test_<area>.cpp, one binary per area.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
