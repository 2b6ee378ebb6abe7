/* nop exits at once (exec latency benchmark). */
int main(void) { return 0; }
