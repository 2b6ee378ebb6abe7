// pyembed: runs a fixed Python program through libpython (the library the
// kernel comparison probes): the count of PyLong_FromLong calls is
// fixed by the program (hash seed fixed too).
#include <Python.h>
#include <stdlib.h>

int main(void) {
	setenv("PYTHONHASHSEED", "0", 1);
	Py_Initialize();
	int r = PyRun_SimpleString("x = 0\nfor i in range(5000):\n    x += i\nprint(x)\n");
	if (Py_FinalizeEx() < 0)
		return 3;
	return r == 0 ? 0 : 2;
}
