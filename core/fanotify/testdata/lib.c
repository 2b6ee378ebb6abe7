/* lib is the shared library dl loads. */
int answer(void) { return 42; }
